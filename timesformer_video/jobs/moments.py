"""Moment search: the k most similar windows of indexed videos, neighbouring overlapping windows merged.

Merge rule: Milvus returns the nearest windows, best first. Walking them in that order, a window of the same video
that overlaps a hit already listed (`start < hit end and end > hit start`, which happens with `--stride` <
`--window`) is merged into that hit: the hit's range grows to cover both, and it keeps its (better) similarity,
label and score; `windows` counts the windows merged into it. Any other window starts a new hit, and the walk stops
at `k` hits, so a window ranked below the k-th hit is never merged. Windows that only touch (`--stride` =
`--window`) stay separate hits. When merging left fewer than `k` hits, more windows are fetched (while Milvus has
more), so a search returns `k` hits whenever the collection holds that many separate moments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .milvus_store import string_literal

MAX_LIMIT = 16384  # Milvus's largest search limit (topk)


def format_time(ms: int) -> str:
    """Milliseconds -> 'h:mm:ss.s' (tenths, rounded down: 3999 ms -> '0:00:03.9')."""
    tenths = int(ms) // 100
    seconds, tenth = divmod(tenths, 10)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f'{hours}:{minute:02d}:{second:02d}.{tenth}'


def label_filter(label: str | None = None, min_score: float | None = None) -> str:
    """A Milvus scalar expression on a moment's top-1 `label` and its `score` ('' when neither is given)."""
    parts = []
    if label is not None:
        parts.append(f'label == {string_literal(label)}')
    if min_score is not None:
        parts.append(f'score >= {float(min_score)!r}')
    return ' and '.join(parts)


def merge_overlapping(hits: Sequence[dict[str, Any]], k: int | None = None) -> list[dict[str, Any]]:
    """Hits best first (by `distance`, the cosine similarity), windows overlapping a better hit of the same video
    merged into it; at most `k` (see the module docstring)."""
    ranked = sorted(hits, key=lambda hit: (-hit['distance'], hit['path'], hit['start_ms']))
    merged: list[dict[str, Any]] = []
    for hit in ranked:
        if k is not None and len(merged) >= k:
            break
        into = next((m for m in merged if m['path'] == hit['path'] and hit['start_ms'] < m['end_ms']
                     and hit['end_ms'] > m['start_ms']), None)
        if into is not None:
            into['start_ms'] = min(into['start_ms'], hit['start_ms'])
            into['end_ms'] = max(into['end_ms'], hit['end_ms'])
            into['windows'] += 1
        else:
            merged.append({**hit, 'windows': 1})
    return merged


def search_moments(store, vector: Sequence[float], k: int, model: str, settings: dict[str, Any] | None = None,
                   label: str | None = None, min_score: float | None = None) -> list[dict[str, Any]]:
    """The k best merged moments: [{'path', 'start_ms', 'end_ms', 'distance', 'label', 'score', 'windows'}].

    `store`: a `milvus_store.MilvusStore`. `label`/`min_score` keep only windows whose top-1 label is
    `label` / whose top-1 score is at least `min_score` (a scalar filter in Milvus, before the vector search)."""
    expression = label_filter(label, min_score)
    limit = min(MAX_LIMIT, max(4 * k, 16))
    while True:
        hits = store.search(vector, limit, model, settings, filter=expression)
        merged = merge_overlapping(hits, k)
        if len(merged) >= k or len(hits) < limit or limit >= MAX_LIMIT:
            return merged
        limit = min(MAX_LIMIT, limit * max(2, math.ceil(k / max(len(merged), 1))))
