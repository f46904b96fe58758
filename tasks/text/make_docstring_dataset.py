"""Build a local text-classification data set from real text: which library does a docstring come from?

    python -m tasks.text.make_docstring_dataset            # writes data/docstrings/{train,test}.csv

Docstrings of functions and classes are read with ``ast`` from the source files of libraries
installed in this environment (nothing is imported or downloaded). Each example is a
docstring's description (its first paragraph, without the code examples and parameter lists),
labelled with its library. Exact duplicates are dropped, classes are capped to the same size,
and the train/test split is seeded, so the same environment gives the same files.
"""

from __future__ import annotations

import argparse
import ast
import csv
import importlib.util
import random
import re
from pathlib import Path

LIBRARIES = ("numpy", "scipy", "torch", "pandas", "sklearn", "sympy")
MIN_CHARS = 40


def description(doc: str) -> str:
    """First paragraph of a docstring, on one line."""
    first = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)[0]
    return " ".join(first.split())


def docstrings(library: str):
    """Yield the description of every function and class docstring in a library's sources."""
    spec = importlib.util.find_spec(library)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"library '{library}' is not installed here; choose from installed packages with --libraries")
    root = Path(next(iter(spec.submodule_search_locations)))
    for path in sorted(root.rglob("*.py")):
        if "tests" in path.parts:  # test docstrings describe tests, not the library
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc:
                    text = description(doc)
                    if len(text) >= MIN_CHARS:
                        yield text


def build(libraries: tuple[str, ...], per_class: int, test_fraction: float, seed: int) -> dict[str, list[tuple[str, str]]]:
    rng = random.Random(seed)
    seen: set[str] = set()
    by_library = {}
    for lib in libraries:
        texts = []
        for text in docstrings(lib):
            if text not in seen:  # identical text in two places would leak across splits
                seen.add(text)
                texts.append(text)
        rng.shuffle(texts)
        by_library[lib] = texts
    n = min(per_class, *(len(t) for t in by_library.values()))
    splits = {"train": [], "test": []}
    n_test = round(n * test_fraction)
    for lib, texts in by_library.items():
        splits["test"] += [(t, lib) for t in texts[:n_test]]
        splits["train"] += [(t, lib) for t in texts[n_test:n]]
    for rows in splits.values():
        rng.shuffle(rows)
    return splits


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/docstrings", help="output folder (default: data/docstrings)")
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES))
    parser.add_argument("--per-class", type=int, default=1200, help="examples per library, before the split")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    splits = build(tuple(args.libraries), args.per_class, args.test_fraction, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        print(f"{out / f'{split}.csv'}: {len(rows)} examples")
    print(f"classes: {', '.join(args.libraries)}")


if __name__ == "__main__":
    main()
