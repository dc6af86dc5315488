"""Trained text classifiers shared by judgment and the guardrail reply classifier.

Labelled examples are JSON Lines files (`text`, `labels`, `lang`, `variety`, `source`,
`family`); a model is built from them deterministically (fixed seed) and cached on disk
under a version that is the hash of the data, the parameters and the library versions, so
a changed example file means a new version and a rebuild, and an unchanged one loads in
milliseconds.

The model: TF-IDF over accent- and case-folded text (`char_wb` 2-5-grams plus word 1-2-grams),
one logistic regression per binary head, calibrated by Platt scaling on out-of-fold scores
(`cross_val_predict`, folds grouped by family so a score is what unseen text gets), and one
multinomial regression for the intent. At run time every head is one column of a single
weight matrix, so scoring a message is one sparse product.

A model may also have a **stacked** head (judgment's `escalate`): gradient-boosted trees
(`HistGradientBoostingClassifier`) over the other heads' out-of-fold scores, the intent
probabilities and a few surface features (length, a question mark, exclamation marks,
capitals), fitted on the union of some labels. It learns what a linear head cannot: that
"cuánto dura la capacitación" with a sure `job_info` is calm though `negotiation` is half
lit, that two half-lit heads together mean a person is needed.

scikit-learn fits the models; what is written by hand here is only the stacking of the
fitted coefficients for that one-product inference, the walk of the fitted trees (checked
against scikit-learn's own prediction at training time) and the explanation of a score.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse

log = logging.getLogger(__name__)

FORMAT = 7  # bump when the artefact layout or the feature code changes
HELD_OUT_BUCKETS = 5  # one family in five is held out


class DatasetError(ValueError):
    """A labelled-examples file cannot be used; every problem names its file and line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text."""

    text: str
    labels: frozenset[str]
    lang: str
    variety: str
    source: str
    family: str
    file: str = ""
    line: int = 0


# --- text folding ---------------------------------------------------------------------

_REPEATS = re.compile(r"(.)\1{2,}")
_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """Lower-case, strip accents, squeeze letters repeated 3+ times to two, collapse spaces."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = plain.replace("’", "'")
    return _SPACES.sub(" ", _REPEATS.sub(r"\1\1", plain)).strip()


# --- datasets -------------------------------------------------------------------------


def read_examples(
    path: Path,
    *,
    vocabulary: Iterable[str],
    varieties: Iterable[str] | None = None,
    require_variety: bool = True,
) -> list[Example]:
    """Read one JSONL file; raise `DatasetError` naming file and line for every bad row."""
    known = set(vocabulary)
    known_varieties = set(varieties) if varieties is not None else None
    problems: list[str] = []
    examples: list[Example] = []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: each line must be a JSON object")
            continue
        text = row.get("text")
        labels = row.get("labels", [])
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: 'text' must be a non-empty string")
            continue
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            problems.append(f"{where}: 'labels' must be a list of strings")
            continue
        unknown = sorted(set(labels) - known)
        if unknown:
            problems.append(
                f"{where}: unknown label {', '.join(map(repr, unknown))}"
                f" (known: {', '.join(sorted(known))})"
            )
            continue
        variety = row.get("variety")
        if variety is None and not require_variety:
            variety = "custom"
        if not isinstance(variety, str) or (
            known_varieties is not None and require_variety and variety not in known_varieties
        ):
            allowed = ", ".join(sorted(known_varieties or ()))
            problems.append(f"{where}: 'variety' must be one of {allowed}")
            continue
        lang = row.get("lang") or variety.split("-")[0]
        source = str(row.get("source") or path.stem)
        family = str(row.get("family") or source)
        examples.append(
            Example(
                text=text,
                labels=frozenset(labels),
                lang=str(lang),
                variety=variety,
                source=source,
                family=family,
                file=str(path),
                line=number,
            )
        )
    if problems:
        raise DatasetError(problems)
    if not examples:
        raise DatasetError([f"{path}: no examples (an empty file teaches nothing)"])
    return examples


def held_out(example: Example) -> bool:
    """Whether the example's family is in the held-out split (stable across runs)."""
    digest = hashlib.sha256(example.family.encode("utf-8")).digest()
    return digest[0] % HELD_OUT_BUCKETS == 0


def split(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """Train and held-out, split by family: no family has rows on both sides."""
    train = [e for e in examples if not held_out(e)]
    test = [e for e in examples if held_out(e)]
    return train, test


def files_digest(paths: Sequence[Path]) -> str:
    """A hash of the files' names and bytes, in a stable order."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode("utf-8"))
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


# --- the model ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Params:
    """Training parameters; part of the model version."""

    heads: tuple[str, ...]
    intents: tuple[str, ...] = ()
    stack: tuple[str, tuple[str, ...]] | None = None
    """A stacked head: its name and the labels whose union it learns (see the module)."""
    languages: bool = False
    """Also fit a language head (es/en/pt) on each example's `lang`."""
    char_ngrams: tuple[int, int] = (2, 5)
    word_ngrams: tuple[int, int] = (1, 2)
    min_df: int = 2
    c: float = 4.0
    seed: int = 20261203

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (for the version hash)."""
        return {
            "heads": list(self.heads),
            "intents": list(self.intents),
            "stack": [self.stack[0], list(self.stack[1])] if self.stack else None,
            "languages": self.languages,
            "char_ngrams": list(self.char_ngrams),
            "word_ngrams": list(self.word_ngrams),
            "min_df": self.min_df,
            "c": self.c,
            "seed": self.seed,
        }


NO_INTENT = "none"


class Scores(NamedTuple):
    """What a model says of one text."""

    heads: dict[str, float]
    intents: dict[str, float]
    languages: dict[str, float]


def _softmax(names: tuple[str, ...], logits: np.ndarray) -> dict[str, float]:
    if not names:
        return {}
    shifted = np.exp(logits - logits.max())
    probs = shifted / shifted.sum()
    return {name: round(float(p), 4) for name, p in zip(names, probs, strict=True)}


_WHITE_SPACES = re.compile(r"\s\s+")
TOKEN_PATTERN = re.compile(r"(?u)\b\w+\b|[!?¡¿]+|[^\w\s]")


def char_wb_grams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams inside word boundaries, as scikit-learn's `char_wb` makes them.

    Each word is padded with a space; a word shorter than n is counted once.
    """
    grams: list[str] = []
    for w in _WHITE_SPACES.sub(" ", text).split():
        w = f" {w} "
        size = len(w)
        for n in range(low, high + 1):
            offset = 0
            grams.append(w[offset : offset + n])
            while offset + n < size:
                offset += 1
                grams.append(w[offset : offset + n])
            if offset == 0:
                break
    return grams


def word_grams(text: str, low: int, high: int) -> list[str]:
    """Word n-grams over `TOKEN_PATTERN` tokens, as scikit-learn's `analyzer="word"`."""
    tokens = TOKEN_PATTERN.findall(text)
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high + 1, len(tokens) + 1)):
        grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


@dataclass
class Features:
    """A fitted TF-IDF space: vocabulary and idf weights (plain data, no scikit-learn)."""

    kind: str  # "char" or "word"
    ngrams: tuple[int, int]
    vocabulary: dict[str, int]
    idf: np.ndarray

    def grams(self, folded: str) -> list[str]:
        """The n-grams of an already folded text."""
        low, high = self.ngrams
        if self.kind == "char":
            return char_wb_grams(folded, low, high)
        return word_grams(folded, low, high)


SURFACE = ("length", "question_mark", "exclamations", "capitals")
"""Surface features the stacked head reads besides the other heads' scores."""


def surface(text: str) -> list[float]:
    """Length (per 100 characters), a question mark, exclamation marks (per 3), capitals."""
    letters = sum(c.isalpha() for c in text)
    capitals = sum(c.isupper() for c in text)
    return [len(text) / 100, float("?" in text), text.count("!") / 3, capitals / max(1, letters)]


@dataclass
class Forest:
    """Fitted gradient-boosted trees as plain arrays, one row per tree (padded).

    Written by hand for the same reason as `TextModel._features`: scoring one message
    must not load scikit-learn. The walk is scikit-learn's (`x <= threshold` goes left;
    the features here are never missing), vectorised over trees one depth level at a
    time; `from_sklearn` checks it against `decision_function` on the training rows.
    """

    feature: np.ndarray  # (trees, nodes) int32
    threshold: np.ndarray  # (trees, nodes) float64
    left: np.ndarray  # (trees, nodes) int32
    right: np.ndarray  # (trees, nodes) int32
    leaf: np.ndarray  # (trees, nodes) bool
    value: np.ndarray  # (trees, nodes) float64
    baseline: float
    depth: int

    @classmethod
    def from_sklearn(cls, fitted: Any, check: np.ndarray) -> Forest:
        """The trees of a fitted binary `HistGradientBoostingClassifier`, checked on `check`."""
        trees = [predictors[0].nodes for predictors in fitted._predictors]
        width = max(len(t) for t in trees)

        def pad(field: str, dtype: Any) -> np.ndarray:
            out = np.zeros((len(trees), width), dtype=dtype)
            for i, t in enumerate(trees):
                out[i, : len(t)] = t[field]
            return out

        leaf = pad("is_leaf", bool)
        leaf[:, :] |= np.arange(width)[None, :] >= np.array([len(t) for t in trees])[:, None]
        forest = cls(
            feature=pad("feature_idx", np.int32),
            threshold=pad("num_threshold", np.float64),
            left=pad("left", np.int32),
            right=pad("right", np.int32),
            leaf=leaf,
            value=pad("value", np.float64),
            baseline=float(np.ravel(fitted._baseline_prediction)[0]),
            depth=int(max(int(t["depth"].max()) for t in trees)),
        )
        expected = fitted.decision_function(check)
        if not np.allclose(forest.raw(check), expected, atol=1e-6):
            raise RuntimeError("the hand-written tree walk disagrees with scikit-learn's")
        return forest

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The forest's raw score (log-odds) of each row of `x`."""
        rows = np.arange(x.shape[0])[:, None]
        trees = np.arange(self.feature.shape[0])[None, :]
        node = np.zeros((x.shape[0], self.feature.shape[0]), dtype=np.int64)
        for _ in range(self.depth):
            done = self.leaf[trees, node]
            if done.all():  # most trees are shallower than the deepest one
                break
            go_left = x[rows, self.feature[trees, node]] <= self.threshold[trees, node]
            step = np.where(go_left, self.left[trees, node], self.right[trees, node])
            node = np.where(done, node, step)
        raw: np.ndarray = self.baseline + self.value[trees, node].sum(axis=1)
        return raw


@dataclass
class Stack:
    """The stacked head: trees over other heads' scores, intents and surface features."""

    name: str
    inputs: tuple[str, ...]  # names of the input columns, for `explain`
    forest: Forest
    platt: tuple[float, float]  # p = 1 / (1 + exp(a * raw + b)), fitted out of fold
    neutral: np.ndarray  # the median of each input in training (what `explain` swaps in)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probability of each row of inputs."""
        a, b = self.platt
        p: np.ndarray = 1.0 / (1.0 + np.exp(self.forest.raw(x) * a + b))
        return p


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-4, 1 - 1e-4)
    out: np.ndarray = np.log(q / (1 - q))
    return out


@dataclass
class TextModel:
    """A fitted model: TF-IDF spaces, one weight column per head, calibration, intents.

    It holds only numpy arrays and dicts: loading it never imports scikit-learn.
    """

    name: str
    version: str
    params: Params
    char: Features
    word: Features
    weights: np.ndarray  # (n_features, n_heads + n_intents)
    bias: np.ndarray  # (n_heads + n_intents,)
    platt: np.ndarray  # (n_heads, 2): p = 1 / (1 + exp(a * f + b))
    intents: tuple[str, ...]
    trained_on: int
    trained_seconds: float
    label_counts: dict[str, int] = field(default_factory=dict)
    languages: tuple[str, ...] = ()
    stack: Stack | None = None
    _names: np.ndarray | None = None
    _fast: list[Any] | None = None

    def _features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """TF-IDF rows as the fitted vectorizers made them (sublinear tf, idf, l2 norm).

        Written by hand on purpose: scikit-learn's `transform` validates its input on
        every call, which costs more than the work for one message (1.4 ms of 1.6), and
        loading it for inference alone costs ~90 MB of memory. A test checks this path
        against scikit-learn's on the shipped data.
        """
        if self._fast is None:
            self._fast = [(self.char, 0), (self.word, len(self.char.vocabulary))]
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for text in texts:
            folded = fold(text)
            row: dict[int, float] = {}
            for space, offset in self._fast:
                vocabulary, idf = space.vocabulary, space.idf
                counts: dict[int, int] = {}
                for gram in space.grams(folded):
                    j = vocabulary.get(gram)
                    if j is not None:
                        counts[j] = counts.get(j, 0) + 1
                if not counts:
                    continue
                values = {j: (1.0 + math.log(c)) * float(idf[j]) for j, c in counts.items()}
                norm = math.sqrt(sum(v * v for v in values.values())) or 1.0
                for j, v in values.items():
                    row[offset + j] = v / norm
            for j in sorted(row):
                indices.append(j)
                data.append(row[j])
            indptr.append(len(indices))
        width = len(self.char.vocabulary) + len(self.word.vocabulary)
        return sparse.csr_matrix(
            (np.array(data, dtype=np.float32), indices, indptr), shape=(len(texts), width)
        )

    def __getstate__(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in self.__dataclass_fields__}
        state["_fast"] = None
        state["_names"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def _raw(self, x: sparse.csr_matrix) -> np.ndarray:
        raw: np.ndarray = np.asarray(x @ self.weights) + self.bias
        return raw

    def score_many(self, texts: Sequence[str]) -> list[Scores]:
        """Per text: calibrated head probabilities, intent and language probabilities."""
        if not texts:
            return []
        raw = self._raw(self._features(texts))
        n = len(self.params.heads)
        k = n + len(self.intents)
        a, b = self.platt[:, 0], self.platt[:, 1]
        heads = 1.0 / (1.0 + np.exp(raw[:, :n] * a + b))
        stacked = None
        if self.stack is not None:
            stacked = self.stack.probability(self._stack_inputs(texts, heads, raw[:, n:k]))
        out: list[Scores] = []
        for row in range(raw.shape[0]):
            head_scores = {
                h: round(float(heads[row, i]), 4) for i, h in enumerate(self.params.heads)
            }
            if stacked is not None and self.stack is not None:
                head_scores[self.stack.name] = round(float(stacked[row]), 4)
            out.append(
                Scores(
                    head_scores,
                    _softmax(self.intents, raw[row, n:k]),
                    _softmax(self.languages, raw[row, k:]),
                )
            )
        return out

    def _stack_inputs(
        self, texts: Sequence[str], heads: np.ndarray, intent_logits: np.ndarray
    ) -> np.ndarray:
        """The stacked head's inputs: head log-odds, intent probabilities, surface features."""
        if self.intents:
            shifted = np.exp(intent_logits - intent_logits.max(axis=1, keepdims=True))
            intents = shifted / shifted.sum(axis=1, keepdims=True)
        else:
            intents = np.zeros((len(texts), 0))
        return stack_inputs(_logit(heads), intents, texts)

    def score(self, text: str) -> Scores:
        """Calibrated head probabilities, intent and language probabilities of one text."""
        return self.score_many([text])[0]

    def feature_names(self) -> np.ndarray:
        """Names of the feature columns (`c:` char n-grams, `w:` word n-grams)."""
        if self._names is None:
            names = ["c:"] * len(self.char.vocabulary) + ["w:"] * len(self.word.vocabulary)
            for gram, j in self.char.vocabulary.items():
                names[j] = "c:" + gram
            for gram, j in self.word.vocabulary.items():
                names[len(self.char.vocabulary) + j] = "w:" + gram
            self._names = np.array(names)
        return self._names

    def explain(self, text: str, column: str, top: int = 6) -> list[tuple[str, float]]:
        """The features of `text` that moved `column` (a head or an intent) most, signed.

        For the stacked head, its inputs: how much the score drops (or rises) when each
        input is replaced by its median in training.
        """
        if self.stack is not None and column == self.stack.name:
            return self._explain_stack(text, top)
        columns = [*self.params.heads, *self.intents]
        index = columns.index(column)
        x = self._features([text]).tocoo()
        contributions = x.data * self.weights[x.col, index]
        if index < len(self.params.heads):  # in probability direction: a < 0 for a good fit
            contributions = contributions * -np.sign(self.platt[index, 0] or -1.0)
        order = np.argsort(-np.abs(contributions))[:top]
        names = self.feature_names()
        return [(str(names[x.col[i]]), round(float(contributions[i]), 3)) for i in order]

    def _explain_stack(self, text: str, top: int) -> list[tuple[str, float]]:
        assert self.stack is not None
        raw = self._raw(self._features([text]))
        n, k = len(self.params.heads), len(self.params.heads) + len(self.intents)
        heads = 1.0 / (1.0 + np.exp(raw[:, :n] * self.platt[:, 0] + self.platt[:, 1]))
        x = self._stack_inputs([text], heads, raw[:, n:k])
        swapped = np.repeat(x, x.shape[1], axis=0)
        np.fill_diagonal(swapped, self.stack.neutral)
        base = float(self.stack.probability(x)[0])
        deltas = base - self.stack.probability(swapped)
        order = np.argsort(-np.abs(deltas))[:top]
        return [(self.stack.inputs[i], round(float(deltas[i]), 3)) for i in order]


def stack_inputs(head_logits: np.ndarray, intents: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Rows of the stacked head's inputs (one home for their order, at training and scoring)."""
    extra = np.array([surface(t) for t in texts], dtype=np.float64).reshape(len(texts), -1)
    return np.hstack([head_logits, intents, extra]).astype(np.float64)


def _vectorizers(params: Params) -> tuple[Any, Any]:
    # heavy (scikit-learn, ~1 s): training only; inference is hand-written, without it
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415

    char = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=params.char_ngrams,
        min_df=params.min_df,
        sublinear_tf=True,
        lowercase=False,
        dtype=np.float32,
    )
    word = TfidfVectorizer(
        analyzer="word",
        ngram_range=params.word_ngrams,
        min_df=1,
        sublinear_tf=True,
        lowercase=False,
        token_pattern=TOKEN_PATTERN.pattern,
        dtype=np.float32,
    )
    return char, word


def train(examples: Sequence[Example], params: Params, *, name: str, version: str) -> TextModel:
    """Fit every head on the examples (deterministic for the same inputs)."""
    # scikit-learn is needed to fit, never to score: imported here, not at module load.
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415  (training only)
    from sklearn.model_selection import StratifiedKFold, cross_val_predict  # noqa: PLC0415

    started = time.perf_counter()
    char, word = _vectorizers(params)
    folded = [fold(e.text) for e in examples]
    x = sparse.hstack([char.fit_transform(folded), word.fit_transform(folded)], format="csr")
    columns: list[np.ndarray] = []
    biases: list[float] = []
    platt: list[tuple[float, float]] = []
    counts = Counter(label for e in examples for label in e.labels)
    grouped = _grouped_folds(examples, params) if params.stack else None
    stack_logits: list[np.ndarray] = []
    for head in params.heads:
        y = np.array([head in e.labels for e in examples], dtype=int)
        if y.sum() < 3 or y.sum() > len(y) - 3:
            raise DatasetError([f"head '{head}' needs at least 3 positive and 3 negative examples"])
        model = LogisticRegression(
            C=params.c, class_weight="balanced", max_iter=2000, solver="liblinear"
        )
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=params.seed)
        oof = cross_val_predict(model, x, y, cv=folds, method="decision_function")
        calibrator = LogisticRegression(C=1e4, max_iter=1000).fit(oof.reshape(-1, 1), y)
        model.fit(x, y)
        columns.append(model.coef_[0].astype(np.float32))
        biases.append(float(model.intercept_[0]))
        # sklearn's p = 1/(1+exp(-(w f + c))); store as a, b of p = 1/(1+exp(a f + b))
        platt.append((-float(calibrator.coef_[0][0]), -float(calibrator.intercept_[0])))
        if grouped is not None:  # what this head says of families it never saw, calibrated
            unseen = cross_val_predict(model, x, y, cv=grouped, method="decision_function")
            stack_logits.append(_logit(calibrator.predict_proba(unseen.reshape(-1, 1))[:, 1]))
    intents: tuple[str, ...] = ()
    intent_probs = np.zeros((len(examples), 0))
    if params.intents:
        allowed = set(params.intents)
        y_intent = [next((lbl for lbl in e.labels if lbl in allowed), NO_INTENT) for e in examples]
        multi = LogisticRegression(C=params.c, max_iter=3000, class_weight="balanced")
        if grouped is not None:
            intent_probs = cross_val_predict(multi, x, y_intent, cv=grouped, method="predict_proba")
        multi.fit(x, y_intent)
        intents = tuple(str(c) for c in multi.classes_)
        for i in range(len(intents)):
            columns.append(multi.coef_[i].astype(np.float32))
            biases.append(float(multi.intercept_[i]))
    languages: tuple[str, ...] = ()
    if params.languages:
        by_lang = LogisticRegression(C=params.c, max_iter=3000, class_weight="balanced")
        by_lang.fit(x, [e.lang for e in examples])
        languages = tuple(str(c) for c in by_lang.classes_)
        for i in range(len(languages)):
            columns.append(by_lang.coef_[i].astype(np.float32))
            biases.append(float(by_lang.intercept_[i]))
    stack = None
    if params.stack is not None and grouped is not None:
        logits = np.column_stack(stack_logits)
        inputs = stack_inputs(logits, intent_probs, [e.text for e in examples])
        stack = _fit_stack(params, examples, inputs, grouped)
    return TextModel(
        name=name,
        version=version,
        params=params,
        char=Features("char", params.char_ngrams, _plain(char.vocabulary_), char.idf_.copy()),
        word=Features("word", params.word_ngrams, _plain(word.vocabulary_), word.idf_.copy()),
        weights=np.column_stack(columns).astype(np.float32),
        bias=np.array(biases, dtype=np.float32),
        platt=np.array(platt, dtype=np.float64).reshape(-1, 2),
        intents=intents,
        languages=languages,
        trained_on=len(examples),
        trained_seconds=round(time.perf_counter() - started, 2),
        label_counts=dict(counts),
        stack=stack,
    )


def _grouped_folds(examples: Sequence[Example], params: Params) -> list[Any]:
    """Folds that keep each family on one side (4, or fewer when there are few families)."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold  # noqa: PLC0415

    families = [e.family for e in examples]
    n = min(4, len(set(families)))
    if n < 2:  # one family (a test, an operator's single file): rows are all there is
        rows = StratifiedKFold(n_splits=3, shuffle=True, random_state=params.seed)
        return list(rows.split(np.zeros(len(examples)), [bool(e.labels) for e in examples]))
    return list(GroupKFold(n_splits=n).split(np.zeros(len(examples)), groups=families))


def _fit_stack(
    params: Params, examples: Sequence[Example], inputs: np.ndarray, folds: list[Any]
) -> Stack:
    """Trees over the heads' out-of-fold scores, calibrated on their own out-of-fold scores."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.model_selection import cross_val_predict  # noqa: PLC0415

    assert params.stack is not None
    name, members = params.stack
    y = np.array([bool(set(members) & e.labels) for e in examples], dtype=int)

    def trees() -> Any:
        return HistGradientBoostingClassifier(
            max_iter=200,
            learning_rate=0.05,
            max_leaf_nodes=15,
            min_samples_leaf=20,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=params.seed,
        )

    unseen = cross_val_predict(trees(), inputs, y, cv=folds, method="decision_function")
    calibrator = LogisticRegression(C=1e4, max_iter=1000).fit(unseen.reshape(-1, 1), y)
    fitted = trees().fit(inputs, y)
    intents = (
        [f"intent:{i}" for i in sorted({*params.intents, NO_INTENT})] if params.intents else []
    )
    return Stack(
        name=name,
        inputs=(*params.heads, *intents, *SURFACE),
        forest=Forest.from_sklearn(fitted, inputs),
        platt=(-float(calibrator.coef_[0][0]), -float(calibrator.intercept_[0])),
        neutral=np.median(inputs, axis=0),
    )


def _plain(vocabulary: dict[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in vocabulary.items()}


def _sklearn_version() -> str:
    return version("scikit-learn")


def version_of(name: str, params: Params, data_digest: str) -> str:
    """The model version: name plus a hash of data, parameters and library versions."""
    h = hashlib.sha256()
    h.update(json.dumps(params.as_dict(), sort_keys=True).encode())
    h.update(data_digest.encode())
    h.update(f"{FORMAT}:{_sklearn_version()}:{np.__version__}".encode())
    return f"{name}-{h.hexdigest()[:12]}"


def cached(
    cache_dir: Path,
    *,
    name: str,
    version: str,
    build: Any,
) -> TextModel:
    """The model `version` from the cache, or built by `build()` and written there."""
    path = cache_dir / f"{version}.pkl"
    if path.is_file():
        try:
            with path.open("rb") as fh:
                model = pickle.load(fh)  # our own artefact, written below
            if isinstance(model, TextModel) and model.version == version:
                return model
        except Exception as exc:  # a truncated or foreign file is rebuilt, not trusted
            log.warning("model cache %s unreadable (%s); rebuilding", path, exc)
    model = build()
    if not isinstance(model, TextModel):
        raise TypeError("build() must return a TextModel")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with tmp.open("wb") as fh:
            pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    except OSError as exc:  # a read-only home still serves the model it just built
        log.warning("cannot write model cache %s: %s", path, exc)
    return model


# --- evaluation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelReport:
    """Precision, recall and F1 of one label, with its counts."""

    label: str
    tp: int
    fp: int
    fn: int
    support: int

    @property
    def precision(self) -> float:
        """Of what was predicted, how much was right (1.0 when nothing was predicted)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """Of what was there, how much was found (1.0 when there was nothing)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return {
            "label": self.label,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "support": self.support,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


def label_reports(
    labels: Sequence[str],
    truth: Sequence[frozenset[str]],
    predicted: Sequence[frozenset[str]],
) -> list[LabelReport]:
    """One report per label over paired truth/prediction sets."""
    reports = []
    for label in labels:
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if label in t and label in p)
        fp = sum(1 for t, p in zip(truth, predicted, strict=True) if label not in t and label in p)
        fn = sum(1 for t, p in zip(truth, predicted, strict=True) if label in t and label not in p)
        support = sum(1 for t in truth if label in t)
        reports.append(LabelReport(label, tp, fp, fn, support))
    return reports
