"""The child side of the code grader: runs ONE sample's program on all its tests, inside the sandbox.

This file is executed as a script (``python -I _code_runner.py``) by :mod:`forkctl.verify.code`, reading one job
(JSON) on stdin and writing events (JSON lines) on stdout. It imports only the standard library, so it starts
fast and works in an interpreter without forkctl on its path; the parent also imports it for the comparison
functions and the prelude, so both sides share one definition.

Process layout (when the OS allows it; see ``setup_sandbox``)::

    grader (forkctl, in the caller's process)
      └─ outer  this script, new session; rlimits already set before exec; unshares net/pid/mount/ipc namespaces
           └─ init  pid 1 of the new pid namespace: mounts /proc, reaps; when it exits the kernel kills the rest
                └─ runner  drops to an unprivileged uid, applies LiveCodeBench's soft guards, runs the program

The runner reproduces LiveCodeBench's ``testing_util`` semantics (written anew from reading it, not copied):
the same prelude, the same wrapping of stdin programs into a function, the same stdin/stdout substitutes and
their quirks, the same per-test alarm and comparison. Mode ``fixed`` changes only the documented false negatives.
"""

from __future__ import annotations

import ast
import io
import json
import math
import os
import signal
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

# ------------------------------------------------------------------------------------------------------------
# The official prelude, as data: its order matters (``from math import *`` shadows ``pow``, ``from builtins
# import *`` restores it; ``from sys import *`` binds ``stdin``/``stdout`` at compile time).

_STAR_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                 "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing")
_PLAIN_MODULES = _STAR_MODULES[:16]
PRELUDE = ("".join(f"from {m} import *\n" for m in _STAR_MODULES)
           + "".join(f"import {m}\n" for m in _PLAIN_MODULES)
           + "sys.setrecursionlimit(50000)\n")
INT_MAX_STR_DIGITS = 50000  # LiveCodeBench sets this process-wide in compute_code_generation_metrics
FLOAT_TOLERANCE = 1e-6  # mode "fixed": absolute or relative, the usual judge tolerance

# ------------------------------------------------------------------------------------------------------------
# Extraction and comparison (shared with the parent).


def extract_code(text: str) -> str:
    """The lines strictly between the last two lines that contain three backticks; fewer than two → ""."""
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1:fences[-1]])


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except (InvalidOperation, ValueError):
        return None


def _close_tokens(a: str, b: str) -> bool:
    """Mode fixed: numeric tokens equal within tolerance, but only when one of them is not an integer (so big
    integers stay exact, as they should)."""
    if not any(c in tok for tok in (a, b) for c in ".eE"):
        return False
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)


def stdout_matches(predicted: str, expected: str, mode: str = "official") -> bool:
    """LiveCodeBench's stdin comparison: stripped lines, same count, each equal as text or as Decimal lists."""
    got, want = _stripped_lines(predicted), _stripped_lines(expected)
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if g == w:
            continue
        dg, dw = _decimals(g), _decimals(w)
        if dg is not None and dw is not None and dg == dw:
            continue
        if mode == "fixed":
            gt, wt = g.split(), w.split()
            if len(gt) == len(wt) and all(x == y or _close_tokens(x, y) for x, y in zip(gt, wt)):
                continue
        return False
    return True


def _fixed_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
                and not isinstance(b, bool):
            return a == b or math.isclose(a, b, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    if isinstance(a, (list, tuple)) and isinstance(b, list):
        return len(a) == len(b) and all(_fixed_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def result_matches(predicted: Any, expected: Any, mode: str = "official") -> bool:
    """LiveCodeBench's functional comparison: a returned tuple becomes a list, then ``==``."""
    if isinstance(predicted, tuple):
        predicted = list(predicted)
    if mode == "fixed":
        return _fixed_equal(predicted, expected)
    return bool(predicted == expected)


# ------------------------------------------------------------------------------------------------------------
# Events to the parent. The program shares this process, so it could write here too: the parent treats the
# stream as untrusted (validates every line, caps its size) and re-checks stdin outputs itself.

_EVENTS_FD = -1


def emit(event: dict[str, Any]) -> None:
    data = (json.dumps(event, default=repr) + "\n").encode("utf-8", "backslashreplace")
    view = memoryview(data)
    while view:
        view = view[_os_write(_EVENTS_FD, view):]


_os_write = os.write  # kept before the soft guards replace os functions


def _truncate(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit // 2] + "...(truncated)..." + text[-limit // 2:]


# ------------------------------------------------------------------------------------------------------------
# The sandbox (outer → init → runner). Every step is optional and reported: the parent decides what to ask for.

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
_CLONE_NEWPID, _CLONE_NEWNET = 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18


def _libc():  # type: ignore[no-untyped-def]
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> bool:
    try:
        return _libc().unshare(flags) == 0
    except (OSError, AttributeError):
        return False


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> bool:
    def b(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    try:
        return _libc().mount(b(source), b(target), b(fstype), flags, b(data)) == 0
    except (OSError, AttributeError):
        return False


def _private_filesystem(applied: dict[str, Any], tmpfs_mb: int, uid: int | None) -> str | None:
    """In a new mount namespace: small private tmpfs on /tmp, /var/tmp, /dev/shm (the program's only writable
    places when it runs under its own uid), and read-only views of ``sys.path`` folders the dropped uid could
    not reach (e.g. an interpreter under /root). Returns the working directory, or None when not possible."""
    if not _unshare(_CLONE_NEWNS):
        return None
    # Without private propagation our mounts would leak into the host's namespace: stop if it fails.
    if not _mount(None, "/", None, _MS_REC | _MS_PRIVATE):
        return None
    if not _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={tmpfs_mb}m,mode=1777"):
        return None
    for extra in ("/var/tmp", "/dev/shm"):
        if os.path.isdir(extra):
            _mount("tmpfs", extra, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=16m,mode=1777")
    if uid is not None:
        _expose_sys_path(applied)
    work = "/tmp/work"
    os.mkdir(work, 0o700)
    if uid is not None:
        os.chown(work, uid, uid)
    applied["private_tmp"] = True
    return work


def _reachable_by_others(path: str) -> bool:
    import stat

    parts = os.path.abspath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        try:
            mode = os.stat(os.sep.join(parts[:i]) or os.sep).st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def _expose_sys_path(applied: dict[str, Any]) -> None:
    os.mkdir("/tmp/.py", 0o755)
    remapped = []
    for i, entry in enumerate(list(sys.path)):
        if not entry or not os.path.isdir(entry) or _reachable_by_others(entry):
            continue
        target = f"/tmp/.py/{i}"
        os.mkdir(target, 0o755)
        if _mount(entry, target, None, _MS_BIND | _MS_REC) and \
                _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY):
            sys.path[i] = target
            remapped.append((entry, target))
    # Packages already imported (e.g. ``encodings``, which imports codecs lazily) keep their old __path__.
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        if isinstance(paths, list):
            paths[:] = [_remap(p, remapped) for p in paths]
    sys.path_importer_cache.clear()
    applied["sys_path_views"] = len(remapped)


def _remap(path: str, remapped: list[tuple[str, str]]) -> str:
    for old, new in remapped:
        if path == old or path.startswith(old.rstrip(os.sep) + os.sep):
            return new + path[len(old.rstrip(os.sep)):]
    return path


def _drop_privileges(uid: int) -> bool:
    try:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        return os.getuid() == uid
    except OSError:
        return False


def setup_sandbox(job: dict[str, Any]) -> dict[str, Any]:
    """Runs in ``outer``; returns what applied. Forks init and runner when a pid namespace is asked for: only the
    runner returns from here (the other two exit inside ``_supervise``)."""
    box = job.get("sandbox", {})
    applied: dict[str, Any] = {"netns": False, "pidns": False, "private_tmp": False, "uid": None}
    uid = box.get("uid")
    if box.get("userns"):  # unprivileged: a user namespace first makes the other namespaces permitted
        applied["userns"] = _unshare(_CLONE_NEWUSER)
    if box.get("netns") and _unshare(_CLONE_NEWNET | _CLONE_NEWIPC):
        applied["netns"] = True
    work = _private_filesystem(applied, int(box.get("tmpfs_mb", 64)), uid) if box.get("mountns") else None
    if box.get("pidns") and _unshare(_CLONE_NEWPID):
        applied["pidns"] = True
        _supervise(applied, proc=True)  # outer waits for init; init waits for the runner
    if work is None:
        work = box.get("workdir") or os.getcwd()
    os.chdir(work)
    if uid is not None and _drop_privileges(uid):
        applied["uid"] = uid
    os.environ["HOME"] = work
    return applied


def _supervise(applied: dict[str, Any], proc: bool) -> None:
    """Fork twice: outer → init (pid 1 of the new namespace) → runner. Only the runner returns."""
    init = os.fork()
    if init:
        _wait_and_exit(init)
    if proc and not _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC):
        applied["proc_remounted"] = False
    runner = os.fork()
    if runner:
        code = _wait_and_exit(runner, report=True)
        os._exit(code)


def _wait_and_exit(pid: int, report: bool = False) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(70)
        except InterruptedError:
            continue
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + sig
    if report:
        try:
            emit({"ev": "exit", "signal": sig, "code": code})
        except OSError:
            pass
    os._exit(code)


# ------------------------------------------------------------------------------------------------------------
# LiveCodeBench's soft guards: part of its semantics (e.g. ``quit()`` and ``os.getcwd()`` fail there), not a
# security boundary. Applied in both modes, after the sandbox is in place.

_DISABLED_OS = ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
                "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir")


def apply_soft_guards() -> None:
    import builtins
    import faulthandler
    import shutil
    import subprocess

    faulthandler.disable()
    builtins.quit = None  # type: ignore[assignment]
    builtins.help = None  # type: ignore[assignment]
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in _DISABLED_OS:
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None  # type: ignore[assignment]
    subprocess.Popen = None  # type: ignore[assignment,misc]
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None  # type: ignore[assignment]


# ------------------------------------------------------------------------------------------------------------
# Program preparation, as LiveCodeBench does it.


def hoist_main_guard(code: str) -> str:
    """A trailing ``if __name__ == '__main__':`` block becomes top-level code."""
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            return ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - unparsable code is left alone, as upstream does
        pass
    return code


def wrap_stdin_program(code: str) -> str:
    """Imports stay at module level; every other statement becomes the body of ``wrapped_function()``."""
    try:
        tree = ast.parse(code)
        imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        others = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
        fn = ast.FunctionDef(name="wrapped_function", args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[],
                             kw_defaults=[], defaults=[]), body=others, decorator_list=[], lineno=-1)
        return PRELUDE + "\n" + ast.unparse(imports) + "\n" + ast.unparse(fn)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - upstream returns the code unchanged (it then fails to compile)
        return code


class TimeoutException(Exception):
    """Raised by the per-test alarm; an ``Exception`` like upstream's, so ``except Exception`` in a program
    catches it there too."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise TimeoutException


def _alarm(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, seconds)


def compile_program(code: str, timeout: float) -> Any:
    """Exec the program as module ``tmp_sol``; a LeetCode ``class Solution`` is instantiated once, as upstream."""
    import types

    module = types.ModuleType("tmp_sol", "")
    _alarm(timeout)
    try:
        exec(code, module.__dict__)  # noqa: S102 - running the program is the point (inside the sandbox)
        return module.Solution() if "class Solution" in code else module
    finally:
        _alarm(0)


# ------------------------------------------------------------------------------------------------------------
# stdin/stdout substitutes. Official: LiveCodeBench's, quirks included. Fixed: real text streams.


class _OutputLimit(BaseException):
    """The program printed more than the cap; a BaseException so ``except Exception`` does not swallow it."""


class _CappedText(io.StringIO):
    def __init__(self, cap: int) -> None:
        super().__init__()
        self._cap, self._size = cap, 0
        self.truncated = False
        self.close = lambda x: 1  # type: ignore[method-assign,assignment]  # upstream's no-op close takes one arg

    def write(self, s: str) -> int:
        self._size += len(s)
        if self._size > self._cap:
            self.truncated = True
            raise _OutputLimit
        return super().write(s)


class _CappedBytes(io.BytesIO):
    def __init__(self, cap: int) -> None:
        super().__init__()
        self._cap = cap
        self.truncated = False

    def write(self, b: Any) -> int:
        if self.tell() + len(b) > self._cap:
            self.truncated = True
            raise _OutputLimit
        return super().write(b)


class _OfficialStdinBuffer:
    """Upstream's ``sys.stdin.buffer``: read() gives all bytes; readline() always gives the first line."""

    def __init__(self, data: str) -> None:
        self._bytes = data.encode("utf-8")

    def read(self, *args: Any) -> bytes:
        return self._bytes

    def readline(self, *args: Any) -> bytes:
        return self._bytes.split(b"\n")[0] + b"\n"


class _OfficialStdin:
    """Upstream's ``sys.stdin`` substitute: read() → all; readline() → next line (with newline); readlines() →
    split on newlines (no newlines kept); other attributes from a StringIO; not iterable (no ``__iter__``)."""

    def __init__(self, data: str) -> None:
        self.inputs = data
        self._text = io.StringIO(data)
        self.buffer = _OfficialStdinBuffer(data)

    def read(self, *args: Any) -> str:
        return self.inputs

    def readline(self, *args: Any) -> str:
        return self._text.readline(*args)

    def readlines(self, *args: Any) -> list[str]:
        return self.inputs.split("\n")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._text, name)


class _Proxy:
    """Mode fixed: ``sys.stdin``/``sys.stdout`` point here before the program is compiled, so names bound by
    ``from sys import *`` follow the per-test stream too."""

    def __init__(self) -> None:
        object.__setattr__(self, "_target", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_target"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_target"), name, value)

    def __iter__(self) -> Any:
        return iter(object.__getattribute__(self, "_target"))

    def __next__(self) -> Any:
        return next(object.__getattribute__(self, "_target"))

    def point(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)


# ------------------------------------------------------------------------------------------------------------
# Running the tests.


def _failure(i: int, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, _OutputLimit):
        return {"ev": "result", "i": i, "verdict": "wrong_answer", "error": "output limit exceeded"}
    verdict = "time_limit" if "timeoutexception" in repr(exc).lower() else "runtime_error"
    return {"ev": "result", "i": i, "verdict": verdict, "error": _truncate(repr(exc))}


def run_functional(job: dict[str, Any], compiled: Any) -> None:
    method = getattr(compiled, job["fn_name"] or "", None)
    if method is None:
        emit({"ev": "compile_error", "error": f"no function {job['fn_name']!r}"})
        return
    emit({"ev": "compiled"})
    args = [[json.loads(line) for line in text.split("\n")] for text in job["inputs"]]
    expected = [json.loads(text) for text in job["outputs"]]
    for i, (arg, want) in enumerate(zip(args, expected)):
        emit({"ev": "start", "i": i})
        _alarm(job["timeout"])
        try:
            got = method(*arg)
            ok = result_matches(got, want, job["mode"])
            _alarm(0)
        except Exception as exc:  # noqa: BLE001 - anything the program raises is its verdict
            _alarm(0)
            emit(_failure(i, exc))
            return
        finally:
            _alarm(0)
        emit({"ev": "result", "i": i, "verdict": "pass" if ok else "wrong_answer",
              **({} if ok else {"output": _truncate(got)})})
        if not ok:
            return


def _official_stdin_call(method: Any, data: str, real_stdin: Any, cap: int) -> tuple[str, bool]:
    """One call under upstream's substitutes. Its patches land, in its decorator order, first on the stdin
    object that was current *before* the swap (the one ``from sys import *`` bound): readline there yields lines
    without newlines from an iterator; read/readlines give everything. Then sys.stdin is swapped and open()
    patched."""
    from unittest import mock

    lines = iter(data.split("\n"))
    capture = _CappedText(cap)
    saved_out = sys.stdout
    sys.stdout = capture
    try:
        with mock.patch.object(real_stdin, "read", lambda *a: data), \
                mock.patch.object(real_stdin, "readlines", lambda *a: data.split("\n")), \
                mock.patch.object(real_stdin, "readline", lambda *a: next(lines)), \
                mock.patch("sys.stdin", _OfficialStdin(data)), \
                mock.patch("builtins.open", mock.mock_open(read_data=data)):
            try:
                method()
            except SystemExit:
                pass
    finally:
        sys.stdout = saved_out
    return capture.getvalue(), capture.truncated


def _fixed_stdin_call(method: Any, data: str, proxies: tuple[_Proxy, _Proxy], cap: int) -> tuple[str, bool]:
    """One call with real text streams: readline/readlines/iteration/``.buffer`` behave as for a program run
    from a shell; fd 0 also holds the input, so ``open(0)`` works."""
    stdin_proxy, stdout_proxy = proxies
    raw = _CappedBytes(cap)
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", write_through=True)
    stdin_proxy.point(io.TextIOWrapper(io.BytesIO(data.encode("utf-8")), encoding="utf-8"))
    stdout_proxy.point(out)
    _input_on_fd0(data)
    try:
        method()
    except SystemExit:
        pass
    finally:
        try:
            out.flush()
        except (_OutputLimit, ValueError):
            pass
    return raw.getvalue().decode("utf-8", "replace"), raw.truncated


def _input_on_fd0(data: str) -> None:
    fd = os.open("stdin.txt", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, data.encode("utf-8"))
    os.lseek(fd, 0, os.SEEK_SET)
    if fd != 0:  # fd 0 is free when the program closed it (e.g. a collected ``open(0)``): then it is ours
        os.dup2(fd, 0)
        os.close(fd)


def run_stdin(job: dict[str, Any], compiled: Any, real_stdin: Any, proxies: tuple[_Proxy, _Proxy] | None) -> None:
    method = getattr(compiled, "wrapped_function", None)
    if method is None:
        emit({"ev": "compile_error", "error": "no wrapped_function (does the program define class Solution?)"})
        return
    emit({"ev": "compiled"})
    for i, (data, want) in enumerate(zip(job["inputs"], job["outputs"])):
        cap = job["output_cap"] + 2 * len(want)
        emit({"ev": "start", "i": i})
        _alarm(job["timeout"])
        try:
            if proxies is None:
                got, truncated = _official_stdin_call(method, data, real_stdin, cap)
            else:
                got, truncated = _fixed_stdin_call(method, data, proxies, cap)
            _alarm(0)
        except BaseException as exc:  # noqa: BLE001 - the program's failure is its verdict
            _alarm(0)
            if isinstance(exc, KeyboardInterrupt):
                raise
            emit(_failure(i, exc))
            return
        ok = not truncated and stdout_matches(got, want, job["mode"])
        # The parent re-checks the output itself; ``ok`` here only decides whether to go on.
        emit({"ev": "result", "i": i, "verdict": "pass" if ok else "wrong_answer", "output": got,
              **({"error": "output limit exceeded"} if truncated else {})})
        if not ok:
            return


def run_job(job: dict[str, Any]) -> None:
    signal.signal(signal.SIGALRM, _on_alarm)
    mode = job["mode"]
    sys.set_int_max_str_digits(0 if mode == "fixed" else INT_MAX_STR_DIGITS)
    real_stdin = sys.stdin
    proxies = None
    if mode == "fixed" and job["testtype"] == "stdin":
        proxies = (_Proxy(), _Proxy())
        proxies[0].point(io.StringIO(""))
        proxies[1].point(io.StringIO())
        sys.stdin, sys.stdout = proxies  # type: ignore[assignment]
    apply_soft_guards()
    code = job["code"]
    if job["testtype"] == "stdin":
        source = wrap_stdin_program(hoist_main_guard(code))
    else:
        source = PRELUDE + "\n\n" + code
    try:
        compiled = compile_program(source, job["timeout"])
    except BaseException as exc:  # noqa: BLE001 - includes SyntaxError, SystemExit and the compile alarm
        emit({"ev": "compile_error", "error": _truncate(repr(exc))})
        return
    if job["testtype"] == "stdin":
        run_stdin(job, compiled, real_stdin, proxies)
    else:
        run_functional(job, compiled)


def _read_job() -> dict[str, Any]:
    chunks = []
    while True:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    return json.loads(b"".join(chunks))


def _redirect_std_fds() -> None:
    """Events go to a private copy of fd 1; fds 0, 1, 2 become /dev/null (as in a multiprocessing child, which
    is where upstream runs programs) so nothing the program prints to the real fds reaches the parent."""
    global _EVENTS_FD
    _EVENTS_FD = os.dup(1)
    os.set_inheritable(_EVENTS_FD, False)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def main() -> None:
    job = _read_job()
    _redirect_std_fds()
    applied = setup_sandbox(job)
    emit({"ev": "isolation", **applied})
    try:
        run_job(job)
    except BaseException as exc:  # noqa: BLE001 - report harness trouble instead of dying silently
        try:
            emit({"ev": "harness_error", "error": _truncate(repr(exc), 1000)})
        except BaseException:  # noqa: BLE001
            pass
    try:
        emit({"ev": "end"})
    except BaseException:  # noqa: BLE001
        pass
    os._exit(0)  # skip interpreter teardown: the program's threads and atexit hooks do not get a say


if __name__ == "__main__":
    main()
