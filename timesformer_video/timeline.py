"""A video's windows on a time axis: one bar per window, coloured by its top label, its score written in it.

For notebooks: make a `Timeline` the last expression of a cell and Jupyter shows it (`_repr_html_`), next to
`DataCollection.show()`'s table of the same rows (which shrinks every image cell to 128x128 px, too small for a
timeline, so the timeline is its own output). `save()` writes .html, .svg or .png. HTML and SVG need only the
standard library; PNG needs matplotlib, imported only then.
"""

from __future__ import annotations

import html
import io
import zlib
from collections.abc import Iterable
from pathlib import Path

# matplotlib's tab20 colours. A label's colour comes from its name (see `label_colours`); beyond twenty labels in
# one timeline colours repeat (the legend says which).
PALETTE = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22',
           '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7',
           '#dbdb8d', '#9edae5')
_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
_WIDTH, _MARGIN, _LANE, _GAP, _AXIS, _LEGEND_ROW = 960, 12, 26, 4, 28, 20


def clock(ms: float) -> str:
    """Milliseconds as m:ss, or h:mm:ss from an hour on."""
    seconds = int(ms // 1000)
    hours, minutes, seconds = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else f'{minutes}:{seconds:02d}'


def _fit(label: str, score: float, chars: int) -> str:
    """What fits in a bar `chars` characters wide: label and score, the label cut short, or nothing."""
    full = f'{label} {score:.2f}'
    if len(full) <= chars:
        return full
    return label if len(label) <= chars else (label[:chars - 1] + '…' if chars >= 4 else '')


def label_colours(labels: Iterable[str]) -> dict[str, str]:
    """A colour per label that depends only on the label's name, not on run order or its share of the video.

    Each label starts at `PALETTE[crc32(name) % 20]`; when two labels of the same timeline land on the same colour,
    the one later in alphabetical order takes the next free colour. So a label keeps its colour from run to run
    (the same set of labels always gives the same colours) and, up to twenty labels, no two share one.
    """
    colours: dict[str, str] = {}
    for label in sorted(set(labels)):
        index = zlib.crc32(label.encode('utf-8')) % len(PALETTE)
        if len(colours) < len(PALETTE):
            taken = set(colours.values())
            while PALETTE[index] in taken:
                index = (index + 1) % len(PALETTE)
        colours[label] = PALETTE[index]
    return colours


class Timeline:
    """Window rows `(start_ms, end_ms, labels, scores, ...)`, as the operator returns them with `window=`."""

    def __init__(self, rows: Iterable, title: str = ''):
        self.windows = [(int(start), int(end), str(labels[0]), float(scores[0]))
                        for start, end, labels, scores, *_ in rows]
        if not self.windows:
            raise ValueError('no window rows to draw')
        self.title = title
        self.start_ms = min(w[0] for w in self.windows)
        self.end_ms = max(w[1] for w in self.windows)
        self.lanes = self._lanes()
        seconds: dict[str, float] = {}
        for start, end, label, _ in self.windows:
            seconds[label] = seconds.get(label, 0.0) + (end - start) / 1000
        self.labels = sorted(seconds, key=lambda label: -seconds[label])  # legend order: most time first
        self.seconds = seconds
        self.colours = label_colours(self.labels)

    @classmethod
    def from_columns(cls, starts, ends, labels, scores, title: str = '') -> Timeline:
        """From column lists, as Towhee's `window_all` hands them over."""
        return cls(zip(starts, ends, labels, scores), title)

    def _lanes(self) -> list[int]:
        """Overlapping windows (stride < window) go on separate lanes: the first lane free at each start."""
        lane_ends: list[int] = []
        lanes = []
        for start, end, _, _ in self.windows:
            lane = next((i for i, last in enumerate(lane_ends) if last <= start), len(lane_ends))
            if lane == len(lane_ends):
                lane_ends.append(end)
            lane_ends[lane] = end
            lanes.append(lane)
        return lanes

    def _tick_step_s(self) -> int:
        span_s = (self.end_ms - self.start_ms) / 1000
        return next((step for step in _TICK_STEPS_S if span_s / step <= 10), _TICK_STEPS_S[-1])

    def to_svg(self) -> str:
        lanes = max(self.lanes) + 1
        plot_w = _WIDTH - 2 * _MARGIN
        top = 24 if self.title else 4
        axis_y = top + lanes * (_LANE + _GAP)
        legend_y = axis_y + _AXIS
        per_row = 4
        height = legend_y + _LEGEND_ROW * -(-len(self.labels) // per_row) + 4
        span = max(self.end_ms - self.start_ms, 1)

        def x(ms: float) -> float:
            return _MARGIN + (ms - self.start_ms) / span * plot_w

        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
               f'font-family="sans-serif" font-size="11">']
        if self.title:
            out.append(f'<text x="{_MARGIN}" y="16" font-size="13" font-weight="bold">{html.escape(self.title)}</text>')
        for (start, end, label, score), lane in zip(self.windows, self.lanes):
            left, width = x(start), max(x(end) - x(start) - 1, 1)
            y = top + lane * (_LANE + _GAP)
            tip = f'{clock(start)}-{clock(end)}  {label}  {score:.2f}'
            out.append(f'<rect x="{left:.1f}" y="{y}" width="{width:.1f}" height="{_LANE}" '
                       f'fill="{self.colours[label]}">'
                       f'<title>{html.escape(tip)}</title></rect>')
            text = _fit(label, score, int(width // 6.5))
            if text:
                out.append(f'<text x="{left + 3:.1f}" y="{y + 17}" pointer-events="none">{html.escape(text)}</text>')
        out.append(f'<line x1="{_MARGIN}" y1="{axis_y}" x2="{_MARGIN + plot_w}" y2="{axis_y}" stroke="#444"/>')
        step_ms = self._tick_step_s() * 1000
        tick = -(-self.start_ms // step_ms) * step_ms
        while tick <= self.end_ms:
            out.append(f'<line x1="{x(tick):.1f}" y1="{axis_y}" x2="{x(tick):.1f}" y2="{axis_y + 4}" stroke="#444"/>'
                       f'<text x="{x(tick):.1f}" y="{axis_y + 16}" text-anchor="middle">{clock(tick)}</text>')
            tick += step_ms
        for i, label in enumerate(self.labels):
            lx, ly = _MARGIN + (i % per_row) * (plot_w / per_row), legend_y + (i // per_row) * _LEGEND_ROW
            out.append(f'<rect x="{lx:.1f}" y="{ly}" width="12" height="12" fill="{self.colours[label]}"/>'
                       f'<text x="{lx + 16:.1f}" y="{ly + 10}">{html.escape(label)} '
                       f'({self.seconds[label]:.0f} s)</text>')
        out.append('</svg>')
        return ''.join(out)

    def to_html(self) -> str:
        return f'<div class="timesformer-timeline">{self.to_svg()}</div>'

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_png(self, dpi: int = 100) -> bytes:
        """The same picture drawn with matplotlib (its object API: no pyplot state, safe off the main thread)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        from matplotlib.ticker import FuncFormatter, MultipleLocator

        lanes = max(self.lanes) + 1
        legend_rows = -(-min(len(self.labels), 12) // 4)
        fig = Figure(figsize=(_WIDTH / 100, 0.9 + 0.35 * lanes + 0.25 * legend_rows), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for (start, end, label, _), lane in zip(self.windows, self.lanes):
            ax.broken_barh([(start / 1000, (end - start) / 1000)], (lane, 0.8), facecolors=self.colours[label],
                           edgecolor='white', linewidth=0.5)
        ax.set_ylim(lanes - 0.1, -0.1)
        ax.set_xlim(self.start_ms / 1000, self.end_ms / 1000)
        ax.set_yticks([])
        ax.xaxis.set_major_locator(MultipleLocator(self._tick_step_s()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda s, _: clock(s * 1000)))
        if self.title:
            ax.set_title(self.title, loc='left', fontsize=10)
        handles = [Patch(color=self.colours[label], label=f'{label} ({self.seconds[label]:.0f} s)')
                   for label in self.labels[:12]]
        ax.legend(handles=handles, loc='upper center', bbox_to_anchor=(0.5, -0.25), ncol=4, fontsize=8,
                  frameon=False)
        fig.tight_layout()
        px_per_s = ax.get_window_extent().width / max((self.end_ms - self.start_ms) / 1000, 1e-3)
        for (start, end, label, score), lane in zip(self.windows, self.lanes):
            text = _fit(label, score, int((end - start) / 1000 * px_per_s // 6))
            if text:
                ax.text(start / 1000, lane + 0.4, ' ' + text, va='center', fontsize=7, clip_on=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, format='png')
        return buffer.getvalue()

    def save(self, path) -> Path:
        """Write `.html`, `.svg` or `.png`, chosen by the suffix."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == '.png':
            path.write_bytes(self.to_png())
        elif suffix in ('.html', '.htm'):
            path.write_text(f'<!doctype html>\n<meta charset="utf-8">\n{self.to_html()}\n', encoding='utf-8')
        elif suffix == '.svg':
            path.write_text(self.to_svg(), encoding='utf-8')
        else:
            raise ValueError(f'{path}: unknown suffix {path.suffix!r}; use .png, .html or .svg')
        return path
