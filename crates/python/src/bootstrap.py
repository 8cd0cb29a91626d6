# Support code installed once per interpreter: the `log` and `metrics` objects KSML functions
# see, and helpers the Rust side calls. Functions here run on every record: keep them lean.
import traceback

from millrace_native import emit as _emit, enabled as _enabled, metric as _metric


def _format(message, args):
    # SLF4J style: each "{}" takes the next argument; anything else ("{:.2f}") stays as written.
    text = str(message)
    if not args:
        return text
    parts = text.split("{}")
    out = [parts[0]]
    for i, part in enumerate(parts[1:]):
        out.append(str(args[i]) if i < len(args) else "{}")
        out.append(part)
    return "".join(out)


class Logger:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def trace(self, message, *args):
        if _enabled(0):
            _emit(0, self.name, _format(message, args))

    def debug(self, message, *args):
        if _enabled(1):
            _emit(1, self.name, _format(message, args))

    def info(self, message, *args):
        if _enabled(2):
            _emit(2, self.name, _format(message, args))

    def warn(self, message, *args):
        if _enabled(3):
            _emit(3, self.name, _format(message, args))

    def error(self, message, *args):
        if _enabled(4):
            _emit(4, self.name, _format(message, args))

    def isTraceEnabled(self):
        return _enabled(0)

    def isDebugEnabled(self):
        return _enabled(1)

    def isInfoEnabled(self):
        return _enabled(2)

    def isWarnEnabled(self):
        return _enabled(3)

    def isErrorEnabled(self):
        return _enabled(4)


def _tag_text(tags):
    if not tags:
        return ""
    if isinstance(tags, dict):
        return ",".join(f"{k}={v}" for k, v in tags.items())
    return ",".join(f"{t.get('key')}={t.get('value')}" for t in tags)


class _Metric:
    __slots__ = ("kind", "name", "tags")

    def __init__(self, kind, name, tags):
        self.kind = kind
        self.name = name
        self.tags = _tag_text(tags)


class Counter(_Metric):
    def increment(self, n=1):
        _metric("counter", self.name, self.tags, n)


class Meter(_Metric):
    def mark(self, n=1):
        _metric("meter", self.name, self.tags, n)


class Timer(_Metric):
    def updateSeconds(self, seconds):
        _metric("timer", self.name, self.tags, seconds * 1000.0)

    def updateMillis(self, millis):
        _metric("timer", self.name, self.tags, millis)

    def updateNanos(self, nanos):
        _metric("timer", self.name, self.tags, nanos / 1e6)


class Metrics:
    """The `metrics` object: instruments are created once per name and tags, then reused."""

    def __init__(self):
        self._made = {}

    def _get(self, cls, kind, name, tags):
        key = (kind, name, _tag_text(tags))
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = cls(kind, name, tags)
        return made

    def counter(self, name, tags=None):
        return self._get(Counter, "counter", name, tags)

    def meter(self, name, tags=None):
        return self._get(Meter, "meter", name, tags)

    def timer(self, name, tags=None):
        return self._get(Timer, "timer", name, tags)


def exec_in(source, filename, namespace):
    exec(compile(source, filename, "exec"), namespace)


def format_exception(error, trace):
    return "".join(traceback.format_exception(type(error), error, trace))
