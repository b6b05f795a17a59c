"""What the terminal shows while something runs: a tqdm bar on a terminal, plain lines otherwise."""

import sys
import time


def _fmt(v: float) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:.3g}"


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

    def _print(self, n: int) -> None:
        print(
            f"[{self.desc}] {self.unit} {n:,}/{self.total:,} {self._text}".rstrip(),
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
