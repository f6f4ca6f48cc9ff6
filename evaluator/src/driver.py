# The evaluator's test driver: `harness.rs` embeds this file (`DRIVER`) and runs it as `main.py`
# in the sandbox directory. Its protocol (input file, report lines) is described there.
import ast, builtins, io, json, math, os, re, signal, sys, threading, time, types

try:
    import resource
except ImportError:
    resource = None
try:
    import ctypes
except ImportError:
    ctypes = None

_INPUT = "harness_input.json"
_MODULE = "solution"
_TEXT_LIMIT = 1000
_GRACE = 1.0

# The program shares our modules: keep our own references to what we use.
_write, _exit, _getpid, _kill, _waitpid = os.write, os._exit, os.getpid, os.kill, os.waitpid
_mono, _sleep, _dumps = time.monotonic, time.sleep, json.dumps
_setitimer, _signal = signal.setitimer, signal.signal
_PID = _getpid()
_lock = threading.Lock()
_out = None
_marker = b""
_libc = None


class _Timeout(BaseException):
    """The case's time limit passed (not an Exception, so `except Exception` lets it through)."""


class _CandidateError(BaseException):
    """The function under test raised inside a relation."""

    def __init__(self, exc):
        BaseException.__init__(self, exc)
        self.exc = exc


class _S:
    armed = False
    fired = 0
    deadline = 0.0
    case = None


class _Sink(io.TextIOBase):
    def __init__(self, fd):
        self._fd = fd
        self.buffer = _BinarySink()

    def write(self, s):
        return len(s)

    def writable(self):
        return True

    def fileno(self):
        return self._fd

    def close(self):
        pass

    @property
    def encoding(self):
        return "utf-8"


class _BinarySink(io.RawIOBase):
    def write(self, b):
        return len(b)

    def writable(self):
        return True

    def close(self):
        pass


_SINKS = (_Sink(1), _Sink(2))


def _line(obj):
    return _marker + _dumps(obj).encode("ascii") + b"\n"


def _put(data):
    while data:
        data = data[_write(_out, data):]


def _emit(obj):
    if _getpid() != _PID:
        _exit(0)  # a forked copy of us: only the original reports
    data = _line(obj)
    with _lock:
        _put(data)


def _text(s):
    if not isinstance(s, str):
        s = str(s)
    if len(s) > _TEXT_LIMIT:
        s = s[:_TEXT_LIMIT] + "... (%d characters)" % len(s)
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _describe(exc):
    name = type(exc).__name__
    try:
        msg = str(exc)
    except _Timeout:
        raise
    except BaseException:
        msg = "<unprintable>"
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == "<solution>":
        line, msg = exc.lineno, exc.msg
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<solution>":
            line = tb.tb_lineno
        tb = tb.tb_next
    out = name + (": " + msg if msg else "")
    if line:
        out += " (line %d)" % line
    return _text(out)


def _shown(value, compat):
    try:
        return _text(str(value) if compat else repr(value))
    except _Timeout:
        raise
    except BaseException as e:
        return _text("<%s whose %s raised %s>" % (type(value).__name__, "str" if compat else "repr", _describe(e)))


# --- time limits -------------------------------------------------------------------------

def _on_alarm(signum, frame):
    if _S.armed:
        _S.fired += 1
        raise _Timeout()


def _cpu_budget(seconds):
    # A CPU limit per case: code stuck in C (a huge integer power) cannot see the timer's
    # exception, but SIGXCPU ends the process and the next case runs in a new one.
    if resource is None:
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        used = resource.getrusage(resource.RUSAGE_SELF)
        limit = int(used.ru_utime + used.ru_stime + seconds) + 2
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))
    except (ValueError, OSError):
        pass


def _arm(seconds, case):
    sys.stdout, sys.stderr = _SINKS  # whatever the program did to them before
    _S.fired = 0
    _S.deadline = _mono() + seconds
    _S.case = case
    try:
        _signal(signal.SIGALRM, _on_alarm)  # the program may have replaced it
    except (ValueError, OSError):
        pass
    _cpu_budget(seconds)
    _S.armed = True
    # Fires again every 0.1 s if the program swallows the exception.
    _setitimer(signal.ITIMER_REAL, seconds, 0.1)


def _disarm():
    while True:
        try:
            _S.armed = False
            _setitimer(signal.ITIMER_REAL, 0, 0)
            return
        except _Timeout:
            pass


def _timed(seconds, case, body):
    """Runs body() under the case's timer; a timeout gives {"status": "timeout"}."""
    try:
        try:
            try:
                _arm(seconds, case)
                status = body()
            finally:
                _disarm()
        except _Timeout:
            _disarm()
            status = {"status": "timeout"}
    except _Timeout:
        _disarm()
        status = {"status": "timeout"}
    if _S.fired:
        status = {"status": "timeout"}
    return status


def _watchdog():
    # The program may ignore SIGALRM or swallow the exception in a loop: past the deadline and
    # a grace period, report the case as a timeout and exit; the next case runs in a new process.
    while True:
        _sleep(0.25)
        if not (_S.armed and _mono() > _S.deadline + _GRACE):
            continue
        with _lock:
            if not (_S.armed and _mono() > _S.deadline + _GRACE):
                continue
            case = _S.case
            if case is None:
                _put(_line({"ev": "fatal", "error": "the program did not stop at its timeout while loading",
                            "case": {"status": "timeout"}}))
            else:
                _put(_line({"ev": "case", "i": case, "result": {"status": "timeout"}}))
                _put(_line({"ev": "restart", "reason": "case %d did not stop at its timeout" % (case + 1)}))
            _exit(0)


# --- containment -------------------------------------------------------------------------

def _landlock(root):
    """Files: read anywhere, write only under root; no TCP; no signals out. Returns the ABI."""
    if _libc is None:
        return None
    c = ctypes
    syscall = _libc.syscall
    syscall.restype = c.c_long
    abi = syscall(c.c_long(444), None, c.c_long(0), c.c_long(1))
    if abi < 1:
        return None
    fs = (1 << 13) - 1
    if abi >= 2:
        fs |= 1 << 13  # REFER
    if abi >= 3:
        fs |= 1 << 14  # TRUNCATE
    if abi >= 5:
        fs |= 1 << 15  # IOCTL_DEV
    net = 3 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP
    scoped = 3 if abi >= 6 else 0  # abstract unix sockets | signals

    class Ruleset(c.Structure):
        _fields_ = [("fs", c.c_uint64), ("net", c.c_uint64), ("scoped", c.c_uint64)]

    class PathBeneath(c.Structure):
        _pack_ = 1
        _fields_ = [("allowed", c.c_uint64), ("fd", c.c_int32)]

    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    attr = Ruleset(fs, net, scoped)
    ruleset = syscall(c.c_long(444), c.byref(attr), c.c_long(size), c.c_long(0))
    if ruleset < 0:
        return None
    try:
        read = 1 | 4 | 8  # EXECUTE | READ_FILE | READ_DIR
        device = (2 | 4 | (1 << 14) | (1 << 15)) & fs  # WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
        for path, allowed in (("/", read), (root, fs), (os.devnull, device)):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = PathBeneath(allowed & fs, fd)
                if syscall(c.c_long(445), c.c_long(ruleset), c.c_long(1), c.byref(rule), c.c_long(0)) != 0:
                    return None
            finally:
                os.close(fd)
        if _libc.prctl(38, c.c_ulong(1), c.c_ulong(0), c.c_ulong(0), c.c_ulong(0)) != 0:  # NO_NEW_PRIVS
            return None
        if syscall(c.c_long(446), c.c_long(ruleset), c.c_long(0)) != 0:
            return None
        return abi
    finally:
        os.close(ruleset)


def _children():
    try:
        _waitpid(-1, os.WNOHANG)
        return True
    except ChildProcessError:
        return False
    except OSError:
        return False


def _descendants():
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
            parents[int(name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    found, frontier = [], [_PID]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid != _PID:
                found.append(pid)
                frontier.append(pid)
    return found


def _reap():
    while True:
        try:
            pid, _ = _waitpid(-1, os.WNOHANG)
        except OSError:
            return
        if pid == 0:
            return


def _kill_strays():
    """Kills every process the program started (we are their subreaper) and reaps them."""
    if not _children():
        return
    for _ in range(100):
        pids = _descendants()
        if not pids:
            break
        for pid in pids:
            try:
                _kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap()
    _reap()


# --- loading and comparing ---------------------------------------------------------------

def _collect(*args, **kwargs):
    return args, kwargs


def _arguments(inp):
    if not isinstance(inp, str):
        return (inp,), {}
    if not inp.strip():
        return (), {}
    code = compile("_collect(" + inp + "\n)", "<input>", "eval")
    return eval(code, {"__builtins__": builtins, "math": math, "_collect": _collect})


def _expected(out):
    """(True, value) when the expected output evaluates, else (False, None)."""
    if not isinstance(out, str):
        return True, out
    text = out.strip()
    try:
        return True, ast.literal_eval(text)
    except _Timeout:
        raise
    except BaseException:
        pass
    try:
        return True, eval(compile(text, "<expected>", "eval"), {"__builtins__": builtins, "math": math})
    except _Timeout:
        raise
    except BaseException:
        return False, None


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, complex)


def _same(a, b, depth=0):
    if depth > 50:
        return bool(a == b)
    if _number(a) and _number(b):
        if isinstance(a, float) or isinstance(b, float):
            if a != a and b != b:
                return True  # both NaN
            try:
                return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
            except (OverflowError, TypeError):
                return bool(a == b)
        return bool(a == b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if isinstance(a, list) != isinstance(b, list) or len(a) != len(b):
            return False
        return all(_same(x, y, depth + 1) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return False
        return all(_same(a[k], b[k], depth + 1) for k in a)
    return bool(a == b)


def _plain(value):
    # numpy arrays and scalars compare as lists and Python numbers
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        try:
            return value.tolist()
        except _Timeout:
            raise
        except BaseException:
            pass
    return value


def _compare(result, out, compat):
    if compat:
        expected = out if isinstance(out, str) else repr(out)
        try:
            shown = str(result)
        except _Timeout:
            raise
        except BaseException as e:
            return {"status": "error", "error": "str() of the result raised " + _describe(e)}
        if shown.strip() == expected.strip():
            return {"status": "passed"}
        return {"status": "failed", "got": _text(shown)}
    value = _plain(result)
    ok, expected = _expected(out)
    try:
        if ok:
            same = _same(value, expected) or (
                isinstance(value, str) and isinstance(out, str) and value.strip() == out.strip())
        else:
            same = str(value).strip() == out.strip()
    except _Timeout:
        raise
    except BaseException:
        same = False
    if same:
        return {"status": "passed"}
    return {"status": "failed", "got": _shown(result, False)}


_DEMO_IMPORT = re.compile(r"\b(from|import)(\s+)\$demo\$")


def _wrap(fn):
    def candidate(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (_Timeout, _CandidateError):
            raise
        except BaseException as e:
            raise _CandidateError(e)
    return candidate


def _relation(rel, mod, fn, entry_point, inp, args, output, out, compat):
    src = rel.replace("$input$", inp if isinstance(inp, str) else repr(inp))
    src = src.replace("$output$", "output")
    src = _DEMO_IMPORT.sub(lambda m: m.group(1) + m.group(2) + _MODULE, src)
    src = src.replace("$demo$", "expected")
    ok, expected = _expected(out)
    if not ok:
        expected = out
    printed = []

    def _print(*values, sep=" ", end="\n", file=None, flush=False):
        printed.append((" " if sep is None else sep).join(str(v) for v in values) + ("\n" if end is None else end))

    candidate = _wrap(fn)
    ns = dict(mod.__dict__)  # the program's helpers (the benchmark's `poly`) are visible
    ns.update({"__builtins__": builtins, "math": math, "candidate": candidate, "inputs": args,
               "output": output, "expected": expected, "print": _print})
    if entry_point.isidentifier():
        ns[entry_point] = candidate
    try:
        try:
            code, statements = compile(src, "<relation>", "eval"), False
        except SyntaxError:
            code, statements = compile(src, "<relation>", "exec"), True
        if statements:
            exec(code, ns)
            ok = "".join(printed).strip() == "True"
        else:
            value = eval(code, ns)
            ok = str(value).strip() == "True" if compat else bool(value)
    except _Timeout:
        raise
    except _CandidateError as e:
        return {"status": "error", "error": _describe(e.exc)}
    except BaseException as e:
        return {"status": "relation_error", "error": _describe(e)}
    if ok:
        return {"status": "passed"}
    return {"status": "failed", "got": _shown(output, compat)}


def _case(mod, fn, entry_point, case, compat):
    inp = case.get("input")
    out = case.get("output")
    rel = (case.get("relation") or "==").strip()
    try:
        args, kwargs = _arguments(inp)
    except _Timeout:
        raise
    except BaseException as e:
        return {"status": "error", "error": "the test input does not evaluate: " + _describe(e)}
    try:
        result = fn(*args, **kwargs)
    except _Timeout:
        raise
    except BaseException as e:
        return {"status": "error", "error": _describe(e)}
    if _S.fired:
        raise _Timeout()
    if rel == "==":
        return _compare(result, out, compat)
    return _relation(rel, mod, fn, entry_point, inp, args, result, out, compat)


def _module():
    mod = types.ModuleType(_MODULE)
    mod.__dict__["__builtins__"] = builtins
    sys.modules[_MODULE] = mod
    return mod


def _find(ns, entry_point):
    for name in (entry_point, "candidate"):
        f = ns.get(name) if name else None
        if callable(f):
            return f
    functions = []
    for value in list(ns.values()):
        if (isinstance(value, types.FunctionType) and value.__module__ == _MODULE
                and value.__name__ != "<lambda>" and value not in functions):
            functions.append(value)
    if len(functions) == 1:
        return functions[0]
    for value in list(ns.values()):
        if isinstance(value, type) and value.__module__ == _MODULE:
            for name in (entry_point, "candidate"):
                if name and callable(getattr(value, name, None)):
                    try:
                        return getattr(value(), name)
                    except _Timeout:
                        raise
                    except BaseException:
                        pass
    names = ", ".join(f.__name__ for f in functions) or "none"
    raise LookupError("no function named %s or candidate, and not exactly one top-level function (found: %s)"
                      % (entry_point or "''", names))


def _run_cases(cfg):
    per_case, compat, first = cfg["per_case"], cfg["compat"], cfg["first"]
    entry_point = cfg.get("entry_point") or ""
    mod = _module()
    found = []

    def load():
        code = compile(cfg["code"], "<solution>", "exec")
        exec(code, mod.__dict__)
        found.append(_find(mod.__dict__, entry_point))
        return None

    def guarded_load():
        try:
            return load()
        except _Timeout:
            raise
        except BaseException as e:
            return {"status": "error", "error": _describe(e)}

    status = _timed(per_case, None, guarded_load)
    _kill_strays()
    if status is not None or not found:
        if status is None:
            status = {"status": "error", "error": "the program did not load"}
        error = "timed out while loading the program" if status["status"] == "timeout" else status["error"]
        _emit({"ev": "fatal", "error": error, "case": status})
        return
    fn = found[0]
    _emit({"ev": "loaded"})
    for j, case in enumerate(cfg["cases"]):
        status = _timed(per_case, first + j, lambda: _case(mod, fn, entry_point, case, compat))
        _emit({"ev": "case", "i": first + j, "result": status})
        _kill_strays()


def _run_program(cfg):
    mod = _module()
    compiled = []

    def build():
        try:
            compiled.append(compile(cfg["code"], "<solution>", "exec"))
        except _Timeout:
            raise
        except BaseException as e:
            return {"status": "error", "error": _describe(e)}
        return None

    status = _timed(cfg["per_case"], None, build)
    if status is not None:
        error = "timed out while compiling the program" if status["status"] == "timeout" else status["error"]
        _emit({"ev": "fatal", "error": error, "case": status})
        return
    _emit({"ev": "loaded"})

    def run():
        try:
            exec(compiled[0], mod.__dict__)
        except _Timeout:
            raise
        except AssertionError as e:
            return {"status": "failed", "got": _describe(e)}
        except BaseException as e:
            return {"status": "error", "error": _describe(e)}
        return {"status": "passed"}

    status = _timed(cfg["per_case"], 0, run)
    _emit({"ev": "case", "i": 0, "result": status})
    _kill_strays()


def _main():
    global _out, _marker, _libc
    with open(_INPUT, "rb") as f:
        cfg = json.loads(f.read().decode("utf-8"))
    try:
        os.remove(_INPUT)
    except OSError:
        pass
    _marker = cfg["marker"].encode("utf-8")
    _out = os.dup(1)  # not inherited by programs the code starts
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    sys.stdout, sys.stderr = _SINKS
    if ctypes is not None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.prctl(36, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))  # CHILD_SUBREAPER
        except (OSError, AttributeError):
            _libc = None
    try:
        landlock = _landlock(os.getcwd())
    except Exception:
        landlock = None
    _emit({"ev": "ready", "landlock": landlock})
    try:
        threading.Thread(target=_watchdog, daemon=True).start()
    except RuntimeError:
        pass  # no threads left under the process limit: SIGXCPU and the wall clock still apply
    if cfg["mode"] == "program":
        _run_program(cfg)
    else:
        _run_cases(cfg)
    _kill_strays()
    _emit({"ev": "done"})


try:
    _main()
except BaseException as e:
    try:
        _emit({"ev": "fatal", "error": "harness failure: " + _describe(e),
               "case": {"status": "error", "error": "harness failure"}})
    except BaseException:
        pass
    _exit(70)
_exit(0)
