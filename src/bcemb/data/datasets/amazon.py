"""Amazon Reviews (2018 and 2023 releases), read from files the user downloaded.

Nothing is downloaded. The release is recognised from the keys of the first review:

- 2018: ``overall``, ``reviewerID``, ``asin``, ``unixReviewTime`` (seconds); metadata keyed by
  ``asin`` with ``brand`` and ``category`` (a list that holds some HTML fragments).
- 2023: ``rating``, ``user_id``, ``parent_asin``, ``timestamp`` (milliseconds); metadata keyed by
  ``parent_asin`` with ``store`` (the brand's role) and ``categories``.

Files are JSON lines, plain or gzip-compressed (recognised by their first bytes). Items get two
feature groups, ``brand`` (at most one value) and ``category``.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bcemb.data.datasets import DATASETS
from bcemb.data.graph import DataError, EvolvingGraph

logger = logging.getLogger(__name__)

__all__ = ["load_amazon"]

_GZIP_MAGIC = b"\x1f\x8b"
# Tags and entities: the 2018 category lists hold scraped fragments like '</span>' or '&amp;'.
_HTML = re.compile(r"[<>]|&#?\w+;")
_MAX_VALUE_LEN = 100
_decode = json.JSONDecoder().decode


@dataclass(frozen=True)
class _Release:
    """Field names of one release."""

    name: str
    user: str
    item: str
    rating: str
    time: str
    ticks_per_second: int
    meta_item: str
    meta_brand: str
    meta_category: str

    @property
    def review_keys(self) -> tuple[str, str, str, str]:
        return (self.user, self.item, self.rating, self.time)


_RELEASES = (
    _Release(
        name="2018",
        user="reviewerID",
        item="asin",
        rating="overall",
        time="unixReviewTime",
        ticks_per_second=1,
        meta_item="asin",
        meta_brand="brand",
        meta_category="category",
    ),
    _Release(
        name="2023",
        user="user_id",
        item="parent_asin",
        rating="rating",
        time="timestamp",
        ticks_per_second=1000,
        meta_item="parent_asin",
        meta_brand="store",
        meta_category="categories",
    ),
)


@DATASETS.register("amazon", synonyms=("amazon-reviews",))
def load_amazon(
    *,
    reviews: str | Path,
    meta: str | Path | None = None,
    min_feature_count: int = 5,
    name: str | None = None,
) -> EvolvingGraph:
    """Load an Amazon Reviews category (2018 or 2023 release) as an evolving graph.

    Users and items are re-indexed by first appearance in time; ``user_ids`` and ``item_ids``
    hold the original ``reviewerID``/``user_id`` and ``asin``/``parent_asin`` strings.
    Timestamps are in seconds for both releases (2023 milliseconds are divided by 1000 after
    ordering, so their sub-second order is kept).

    Args:
        reviews: Review file, e.g. ``Grocery_and_Gourmet_Food_5.json.gz`` (2018) or
            ``Grocery_and_Gourmet_Food.jsonl`` (2023); plain or gzip JSON lines.
        meta: Metadata file of the same release (``meta_<Category>.json.gz``). When given,
            reviews of items without a metadata line are dropped. Default ``None``: no features.
        min_feature_count: Feature values seen on fewer items are dropped (the paper uses 5).
            Default 5.
        name: Name of the graph; default ``amazon-<release>:<file stem>``.

    Returns:
        The graph, with item feature groups ``brand`` and ``category`` when ``meta`` is given.

    Raises:
        DataError: A file is missing, empty, not valid gzip, holds a malformed JSON line or a
            line without a required key (the message names the file and the 1-based line),
            or the release is not recognised.
        ValueError: ``min_feature_count`` is below 1.

    Example:
        >>> graph = load_amazon(  # doctest: +SKIP
        ...     reviews="Grocery_and_Gourmet_Food_5.json.gz",
        ...     meta="meta_Grocery_and_Gourmet_Food.json.gz",
        ... )
    """
    if isinstance(min_feature_count, bool) or not isinstance(min_feature_count, int):
        raise ValueError(f"min_feature_count must be an int, got {min_feature_count!r}")
    if min_feature_count < 1:
        raise ValueError(f"min_feature_count must be >= 1, got {min_feature_count}")
    reviews = Path(reviews)
    log = _read_reviews(reviews)
    release = log.release
    logger.info(
        "read %d reviews (%s release) by %d users of %d items from %s",
        log.item.shape[0],
        release.name,
        len(log.user_names),
        len(log.item_names),
        reviews,
    )

    keep = np.ones(log.item.shape[0], dtype=bool)
    item_features: dict[str, dict[object, list[str]]] = {}
    if meta is not None:
        meta = Path(meta)
        item_meta = _read_meta(meta, release, wanted=log.item_index)
        has_meta = np.zeros(len(log.item_names), dtype=bool)
        has_meta[list(item_meta)] = True
        keep = has_meta[log.item]
        dropped = int((~keep).sum())
        if dropped == keep.shape[0]:
            raise DataError(f"none of the reviews in {reviews} is of an item listed in {meta}")
        if dropped:
            logger.info("dropped %d reviews of items without metadata in %s", dropped, meta)
        item_features = {
            "brand": {code: ([b] if b else []) for code, (b, _) in item_meta.items()},
            "category": {code: cats for code, (_, cats) in item_meta.items()},
        }

    # Order by full-resolution time before converting to seconds, so that from_log's stable
    # sort keeps the sub-second order of the 2023 release.
    rows = np.flatnonzero(keep)
    rows = rows[np.argsort(log.time[rows], kind="stable")]
    graph = EvolvingGraph.from_log(
        log.user[rows],
        log.item[rows],
        log.rating[rows],
        log.time[rows] // release.ticks_per_second,
        item_features=item_features,
        min_feature_count=min_feature_count,
        name=name or f"amazon-{release.name}:{_stem(reviews)}",
    )
    # from_log indexed integer codes (cheaper than sorting strings); restore the original ids.
    graph.user_ids = np.asarray(log.user_names)[graph.user_ids]
    graph.item_ids = np.asarray(log.item_names)[graph.item_ids]
    logger.info("loaded %r", graph)
    return graph


@dataclass
class _ReviewLog:
    """Raw review columns with users and items coded by order of appearance in the file."""

    release: _Release
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    time: np.ndarray
    user_names: list[str]
    item_names: list[str]
    item_index: dict[str, int]


def _read_reviews(path: Path) -> _ReviewLog:
    """Stream a review file into columns, checking every line."""
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    user_col, item_col, time_col = array("q"), array("q"), array("q")
    rating_col = array("d")
    release: _Release | None = None
    keys: tuple[str, str, str, str] = ("", "", "", "")
    for lineno, obj in _iter_records(path):
        if release is None:
            release = _detect_release(obj, path, lineno)
            keys = release.review_keys
        try:
            u, i, r, t = obj[keys[0]], obj[keys[1]], obj[keys[2]], obj[keys[3]]
        except KeyError as err:
            raise DataError(f"{path}, line {lineno}: missing key {err.args[0]!r}") from None
        try:
            rating = float(r)
            time = int(t)
        except (TypeError, ValueError):
            raise DataError(
                f"{path}, line {lineno}: rating {r!r} or timestamp {t!r} is not a number"
            ) from None
        if not 1.0 <= rating <= 5.0:
            raise DataError(f"{path}, line {lineno}: rating {r!r} is outside 1..5")
        u, i = str(u), str(i)
        user_col.append(users.setdefault(u, len(users)))
        item_col.append(items.setdefault(i, len(items)))
        rating_col.append(rating)
        time_col.append(time)
    assert release is not None  # _iter_records raises on an empty file
    return _ReviewLog(
        release=release,
        user=np.frombuffer(user_col, dtype=np.int64),
        item=np.frombuffer(item_col, dtype=np.int64),
        rating=np.frombuffer(rating_col, dtype=np.float64).astype(np.float32),
        time=np.frombuffer(time_col, dtype=np.int64),
        user_names=list(users),
        item_names=list(items),
        item_index=items,
    )


def _read_meta(
    path: Path, release: _Release, *, wanted: dict[str, int]
) -> dict[int, tuple[str | None, list[str]]]:
    """Brand and cleaned categories of the reviewed items, keyed by item code.

    Only items in ``wanted`` are kept (metadata files list far more items than the 5-core
    review files); of a repeated item the first line wins.
    """
    out: dict[int, tuple[str | None, list[str]]] = {}
    seen: set[str] = set()
    repeats = 0
    key = release.meta_item
    for lineno, obj in _iter_records(path):
        try:
            item = str(obj[key])
        except KeyError:
            raise DataError(
                f"{path}, line {lineno}: missing key {key!r} "
                f"(expected {release.name}-release metadata, like the reviews)"
            ) from None
        if item in seen:
            repeats += 1
            continue
        seen.add(item)
        code = wanted.get(item)
        if code is None:
            continue
        cats = obj.get(release.meta_category) or []
        if isinstance(cats, str):
            cats = [cats]
        out[code] = (
            _clean_value(obj.get(release.meta_brand)),
            [c for c in (_clean_value(v) for v in cats) if c],
        )
    if repeats:
        logger.info("%s repeats %d items; kept the first line of each", path, repeats)
    logger.info("found metadata for %d of %d reviewed items in %s", len(out), len(wanted), path)
    return out


def _clean_value(value: Any) -> str | None:
    """A stripped feature value, or None for empty, HTML-fragment or overlong values."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > _MAX_VALUE_LEN or _HTML.search(value):
        return None
    return value


def _detect_release(obj: dict[str, Any], path: Path, lineno: int) -> _Release:
    """The release whose review keys the first object holds most of."""
    hits = [sum(k in obj for k in rel.review_keys) for rel in _RELEASES]
    best = max(hits)
    if best == 0 or hits.count(best) > 1:
        expected = "; ".join(f"{r.name}: {', '.join(r.review_keys)}" for r in _RELEASES)
        raise DataError(
            f"{path}, line {lineno}: not an Amazon review in a known release; keys "
            f"{sorted(obj)[:12]}, expected ({expected})"
        )
    return _RELEASES[hits.index(best)]


def _iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(1-based line number, JSON object)`` for each non-blank line of a file."""
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    with path.open("rb") as fh:
        is_gzip = fh.read(2) == _GZIP_MAGIC
    if path.suffix == ".gz" and not is_gzip:
        raise DataError(f"broken gzip file {path}: it does not start with the gzip header")
    lineno = 0
    count = 0
    try:
        with gzip.open(path, "rb") if is_gzip else path.open("rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.isspace():
                    continue
                try:
                    # decode + a bound decoder skips json.loads' encoding sniffing: ~25 % faster
                    text = line.decode("utf-8")
                    if lineno == 1:
                        text = text.removeprefix("\ufeff")
                    obj = _decode(text)
                except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
                    raise DataError(f"{path}, line {lineno}: malformed JSON ({err})") from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}"
                    )
                count += 1
                yield lineno, obj
    except (OSError, EOFError, zlib.error) as err:
        what = "broken gzip file" if is_gzip else "cannot read file"
        raise DataError(f"{what} {path} (after line {lineno}): {err}") from err
    if count == 0:
        raise DataError(f"empty file: {path}")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name
