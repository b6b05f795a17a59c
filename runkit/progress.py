"""What the terminal shows while something runs: a tqdm bar on a terminal, plain lines otherwise
(each with the time left at the rate so far, as tqdm's bar shows it)."""

import sys
import time


def _fmt(v: float) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:.3g}"


def duration(seconds: float) -> str:
    """A span of time as people read it: 45 s, 12 min 5 s, 4 h 12 min."""
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class Progress:
    """A tqdm bar on a terminal; otherwise a plain line every `every_s` seconds and a final one;
    nothing when disabled. `unit` names what is counted (steps, episodes)."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        enabled: bool = True,
        every_s: float = 30.0,
        desc: str = "",
        unit: str = "step",
    ):
        self.enabled, self.total, self.every_s, self.desc, self.unit = enabled, total, every_s, desc, unit
        self.tty = sys.stderr.isatty()
        self._start, self._initial = time.time(), initial
        self._last_print = time.time()
        self._bar = None
        self._n = initial
        self._text = ""
        if enabled and self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, n: int, **fields: float | None) -> None:
        if not self.enabled:
            return
        self._text = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None) or self._text
        if self._bar is not None:
            self._bar.update(n - self._n)
            self._bar.set_postfix_str(self._text, refresh=False)
        elif time.time() - self._last_print >= self.every_s:
            self._print(n)
        self._n = n

    def eta(self, n: int) -> float | None:
        """Seconds left at the rate since the start (None before any progress or after the end)."""
        done, elapsed = n - self._initial, time.time() - self._start
        if done <= 0 or n >= self.total or elapsed <= 0:
            return None
        return (self.total - n) * elapsed / done

    def _print(self, n: int) -> None:
        left = self.eta(n)
        eta = f" eta {duration(left)}" if left is not None else ""
        print(
            f"[{self.desc}] {self.unit} {n:,}/{self.total:,} {self._text}".rstrip() + eta,
            file=sys.stderr,
            flush=True,
        )
        self._last_print = time.time()

    def close(self) -> None:
        """Ends the display; in plain mode always with a last line, so a piped log shows where it stopped."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._print(self._n)
