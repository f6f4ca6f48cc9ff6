"""A small inventory module: some functions are specified clearly, some are not."""


def total_price(prices: list[float], quantities: list[int]) -> float:
    """Return the total cost of an order.

    Multiplies each price by the quantity at the same index and returns the sum.
    Both lists have the same length; an empty order costs 0.0.

    >>> total_price([2.0, 3.5], [3, 2])
    13.0
    """
    return sum(p * q for p, q in zip(prices, quantities))


def filter_items(items, limit):
    """Return the items that are big enough."""
    return [item for item in items if item > limit]


def sort_stock(stock: dict[str, int]) -> list[str]:
    """Sort the stock and return the important ones."""
    return sorted(stock, key=stock.get)[:3]


def restock_needed(level: int, minimum: int) -> bool:
    """Return True when the stock level is strictly below the minimum, else False.

    >>> restock_needed(3, 5)
    True
    >>> restock_needed(5, 5)
    False
    """
    return level < minimum


def bulk_price(unit_price: float, quantity: int) -> float:
    """Return the price of `quantity` units, with 10% off from 10 units on.

    >>> bulk_price(2.0, 10)
    18.0
    """
    if quantity > 10:
        return unit_price * quantity * 0.9
    return unit_price * quantity


def low_stock(stock: dict[str, int], minimum: int = 5) -> list[str]:
    """Return the names of the items with fewer than `minimum` units, sorted by name.

    Args:
        stock: Units on hand per item name.
        threshold: Items below this count are returned.
    """
    return sorted(name for name, units in stock.items() if units < minimum)


def average_units(stock: dict[str, int]) -> int:
    """Return the mean number of units per item, rounded to one decimal place."""
    if not stock:
        return 0
    return round(sum(stock.values()) / len(stock), 1)


def apply_discount(price: float, discount: float) -> float:
    """Apply the discount to the price.

    The discount is a percentage between 0 and 100.

    >>> apply_discount(200.0, 0.25)
    150.0
    """
    return price * (1 - discount)


class Warehouse:
    def __init__(self):
        self.shelves = {}

    def move(self, item, target):
        """Move the item somewhere else if possible."""
        self.shelves[item] = target

    def count(self, item: str) -> int:  # clarify: ignore
        """Count it."""
        return len(self.shelves.get(item, ()))
