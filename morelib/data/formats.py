"""Record formats of the preference datasets: reading files and turning one record into one `Pair`.

One converter per published format (Anthropic HH-RLHF, OpenAI summarize-from-feedback comparisons, OpenAssistant
export trees / flat message rows / derived pairs, OpenAI WebGPT comparisons, UltraFeedback binarized, and a generic
prompt/chosen/rejected table). Every converter is shared by the hub path and the local-file path, so the same record
gives the same `Pair` either way. Checked against the files in /work/shared/data: HH is split losslessly on every row,
and the OASST tree walk reproduces the 732 pairs of the derived `en_100_tree_pairs.jsonl.gz` exactly.

Rendering (NOTE(paper): the paper does not state its templates): dialogue prompts use the HH transcript style,
"\n\nHuman: ...\n\nAssistant:" ending with an open Assistant marker, and responses start with one space, so that
`prompt + chosen` reads as one transcript for every source. Summarize prompts use OpenAI's TL;DR layout
("SUBREDDIT: r/...\nTITLE: ...\nPOST: ...\n\nTL;DR:"); its summaries already start with a space.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morelib.core.errors import DataError

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
ROLE_MARKERS = {"prompter": HUMAN, "user": HUMAN, "human": HUMAN, "assistant": ASSISTANT}


@dataclass(frozen=True, slots=True)
class Pair:
    """One preference comparison: `prompt + chosen` was preferred to `prompt + rejected`; `group` keeps splits clean."""

    prompt: str
    chosen: str
    rejected: str
    source: str
    group: str


def read_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ("file:line", object) for each JSON line of a .jsonl/.json(.gz) file or row of a .parquet file."""
    if path.suffix == ".parquet":
        yield from _read_parquet(path)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield f"{path}:{number}", _parse_line(raw, f"{path}:{number}")
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: truncated or corrupt gzip file ({err})") from err
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err


def _parse_line(raw: bytes, where: str) -> dict[str, Any]:
    """Decode one UTF-8 JSON object line, naming file:line on failure."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: text is not valid UTF-8 ({err.reason} at byte {err.start})") from err
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _read_parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ("file:row N", row) of a parquet table."""
    import pyarrow.parquet as pq  # installed with `datasets`; imported lazily as only parquet files need it

    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable parquet file ({err})") from err
    for number, row in enumerate(rows, start=1):
        yield f"{path}:row {number}", row


def field(record: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """`record[key]`, checked to exist and to be of `kind`; DataError naming file:line and the field otherwise."""
    if key not in record or record[key] is None:
        raise DataError(f"{where}: missing field '{key}'")
    value = record[key]
    if not isinstance(value, kind) or (kind in (int, float, (int, float)) and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "|".join(k.__name__ for k in kind)
        raise DataError(f"{where}: field '{key}' must be {names}, got {type(value).__name__}")
    return value


def render_dialogue(turns: Sequence[tuple[str, str]]) -> str:
    """HH-style transcript of (role, text) turns, ending with an open '\\n\\nAssistant:' marker."""
    parts = []
    for role, text in turns:
        if role not in ROLE_MARKERS:
            raise DataError(f"unknown dialogue role '{role}' (valid: {', '.join(ROLE_MARKERS)})")
        parts.append(f"{ROLE_MARKERS[role]} {text}")
    return "".join(parts) + ASSISTANT


def respond(text: str) -> str:
    """A response as it follows an open Assistant marker."""
    return " " + text


# Each converter returns a Pair, or a drop reason (str) for a row that is skipped and counted.


def hh_pair(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """Anthropic HH-RLHF {"chosen", "rejected"} transcripts → lossless (shared prompt, two continuations)."""
    chosen, rejected = field(record, "chosen", where), field(record, "rejected", where)
    if chosen == rejected:
        return "chosen == rejected"
    shared = os.path.commonprefix([chosen, rejected])
    cut = shared.rfind(ASSISTANT)
    if cut < 0:
        return "no shared Assistant turn"
    cut += len(ASSISTANT)
    prompt = chosen[:cut]
    return Pair(prompt, chosen[cut:], rejected[cut:], source, prompt)


def summarize_prompt(info: dict[str, Any], where: str) -> str:
    """OpenAI TL;DR prompt of a Reddit post or a CNN/DM article."""
    title = field(info, "title", where)
    if info.get("post") is not None:
        subreddit = field(info, "subreddit", where)
        return f"SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {field(info, 'post', where)}\n\nTL;DR:"
    return f"TITLE: {title}\nARTICLE: {field(info, 'article', where)}\n\nTL;DR:"


def summarize_pair(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """OpenAI comparisons {"info", "summaries", "choice"} → (TL;DR prompt, chosen summary, other); group = info.id."""
    info = field(record, "info", where, dict)
    summaries = field(record, "summaries", where, list)
    choice = field(record, "choice", where, int)
    if len(summaries) != 2 or choice not in (0, 1):
        raise DataError(f"{where}: expected 2 summaries and choice 0|1, got {len(summaries)} and {choice}")
    if not all(isinstance(s, dict) for s in summaries):
        raise DataError(f"{where}: field 'summaries' must hold objects with a 'text' field")
    texts = [field(s, "text", where) for s in summaries]
    if texts[0] == texts[1]:
        return "chosen == rejected"
    return Pair(summarize_prompt(info, where), texts[choice], texts[1 - choice], source, str(field(info, "id", where)))


def webgpt_pair(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """OpenAI WebGPT {"question": {"full_text"}, answer_0/1, score_0/1} → higher score chosen; ties dropped."""
    question = field(field(record, "question", where, dict), "full_text", where)
    answers = [field(record, f"answer_{i}", where) for i in (0, 1)]
    scores = [field(record, f"score_{i}", where, (int, float)) for i in (0, 1)]
    if scores[0] == scores[1]:
        return "tied scores"
    if answers[0] == answers[1]:
        return "chosen == rejected"
    best = 0 if scores[0] > scores[1] else 1
    prompt = render_dialogue([("prompter", question)])
    return Pair(prompt, respond(answers[best]), respond(answers[1 - best]), source, question)


def ultrafeedback_pair(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """UltraFeedback binarized: local {"prompt", "chosen", "rejected", "metadata"} or trl-lib message lists."""
    if isinstance(record.get("chosen"), list):
        return _ultrafeedback_messages(record, where, source)
    meta = field(record, "metadata", where, dict)
    if field(meta, "score_chosen", where, (int, float)) == field(meta, "score_rejected", where, (int, float)):
        return "tied scores"
    prompt = field(record, "prompt", where)
    chosen, rejected = field(record, "chosen", where), field(record, "rejected", where)
    if chosen == rejected:
        return "chosen == rejected"
    return Pair(render_dialogue([("user", prompt)]), respond(chosen), respond(rejected), source, prompt)


def _ultrafeedback_messages(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """trl-lib/ultrafeedback_binarized row: chosen/rejected message lists sharing all but the last message."""
    if field(record, "score_chosen", where, (int, float)) == field(record, "score_rejected", where, (int, float)):
        return "tied scores"
    chosen, rejected = field(record, "chosen", where, list), field(record, "rejected", where, list)
    turns = [(field(m, "role", where), field(m, "content", where)) for m in chosen[:-1]]
    last_c, last_r = field(chosen[-1], "content", where), field(rejected[-1], "content", where)
    if last_c == last_r:
        return "chosen == rejected"
    prompt = render_dialogue(turns)
    return Pair(prompt, respond(last_c), respond(last_r), source, prompt)


def table_pair(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """Generic {"prompt", "chosen", "rejected"} row, taken verbatim; group = prompt."""
    prompt, chosen, rejected = (field(record, k, where) for k in ("prompt", "chosen", "rejected"))
    if chosen == rejected:
        return "chosen == rejected"
    return Pair(prompt, chosen, rejected, source, prompt)


def instruction_pair(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """TRL/RewardBench {"prompt", "chosen", "rejected"}: a plain instruction becomes one Human turn (an HH transcript
    prompt is kept verbatim, as `table_pair`); TRL's conversational form (message lists) is rendered turn by turn."""
    if isinstance(record.get("prompt"), list):
        return _conversation_pair(record, where, source)
    prompt = field(record, "prompt", where)
    if prompt.lstrip().startswith("Human:"):
        return table_pair(record, where, source)
    chosen, rejected = field(record, "chosen", where), field(record, "rejected", where)
    if chosen == rejected:
        return "chosen == rejected"
    return Pair(render_dialogue([("user", prompt)]), respond(chosen), respond(rejected), source, prompt)


def _message(message: Any, where: str) -> tuple[str, str]:
    """(role, content) of one chat message {"role", "content"}, checked."""
    if not isinstance(message, dict):
        raise DataError(f"{where}: a chat message must be an object with 'role' and 'content', got {message!r:.60}")
    role = field(message, "role", where)
    if role not in ROLE_MARKERS:
        raise DataError(f"{where}: unknown chat role '{role}' (valid: {', '.join(ROLE_MARKERS)})")
    return role, field(message, "content", where)


def _conversation_pair(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """TRL conversational row: prompt = message list, chosen/rejected = message lists ending with the response."""
    turns = [_message(m, where) for m in field(record, "prompt", where, list)]
    replies = [field(record, k, where, list) for k in ("chosen", "rejected")]
    if not all(replies):
        raise DataError(f"{where}: fields 'chosen' and 'rejected' must each hold at least one message")
    chosen, rejected = (_message(r[-1], where)[1] for r in replies)
    if chosen == rejected:
        return "chosen == rejected"
    prompt = render_dialogue(turns)
    return Pair(prompt, respond(chosen), respond(rejected), source, prompt)


def judge_pair(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """Pairwise-judge row {"input", "output_1", "output_2", "label"} (LLMBar layout): label 1 or 2 names the better
    output; the input becomes one Human turn."""
    prompt = field(record, "input", where)
    outputs = [field(record, f"output_{i}", where) for i in (1, 2)]
    label = field(record, "label", where, int)
    if label not in (1, 2):
        raise DataError(f"{where}: field 'label' must be 1 or 2 (the better output), got {label}")
    if outputs[0] == outputs[1]:
        return "chosen == rejected"
    best = label - 1
    return Pair(render_dialogue([("user", prompt)]), respond(outputs[best]), respond(outputs[1 - best]), source, prompt)


def oasst_pairs_row(record: dict[str, Any], where: str, source: str) -> Pair | str:
    """Derived OASST pairs row {"prompt": [{role, text}], "chosen", "rejected", "message_tree_id"} → Pair."""
    turns = [(field(t, "role", where), field(t, "text", where)) for t in field(record, "prompt", where, list)]
    chosen, rejected = field(record, "chosen", where), field(record, "rejected", where)
    if chosen == rejected:
        return "chosen == rejected"
    return Pair(
        render_dialogue(turns), respond(chosen), respond(rejected), source, field(record, "message_tree_id", where)
    )


def oasst_tree_pairs(tree: dict[str, Any], where: str, source: str, lang: str | None = "en") -> Iterator[Pair | str]:
    """Pairs of differently-ranked sibling assistant replies in one OASST export tree {"message_tree_id", "prompt"}.

    Deleted and synthetic messages (and everything below them) are skipped; replies without a rank are unused.
    `lang` keeps prompts whose prompter message has that language (None keeps all); others count as dropped.
    """
    tree_id = str(field(tree, "message_tree_id", where))
    stack = [(field(tree, "prompt", where, dict), ())]
    while stack:
        message, path = stack.pop()
        if message.get("deleted") or message.get("synthetic"):
            continue
        turns = path + ((field(message, "role", where), field(message, "text", where)),)
        replies = [r for r in message.get("replies") or [] if isinstance(r, dict)]
        if turns[-1][0] == "prompter":
            same_lang = lang is None or message.get("lang") == lang
            for item in _sibling_pairs(turns, replies, tree_id, source):
                yield item if same_lang or isinstance(item, str) else "other language"
        stack.extend((reply, turns) for reply in reversed(replies))


def _sibling_pairs(turns: tuple, replies: list[dict], tree_id: str, source: str) -> Iterator[Pair | str]:
    """Every pair of ranked, kept sibling replies with different ranks (lower rank = chosen)."""
    ranked = [r for r in replies if not r.get("deleted") and not r.get("synthetic") and r.get("rank") is not None]
    prompt = render_dialogue(turns)
    for a, b in itertools.combinations(ranked, 2):
        if a["rank"] == b["rank"]:
            yield "tied ranks"
            continue
        best, worst = (a, b) if a["rank"] < b["rank"] else (b, a)
        if best["text"] == worst["text"]:
            yield "chosen == rejected"
            continue
        yield Pair(prompt, respond(best["text"]), respond(worst["text"]), source, tree_id)


def oasst_flat_to_trees(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hub `OpenAssistant/oasst1` flat message rows (message_id, parent_id, ...) → export trees, row order kept."""
    nodes: dict[str, dict[str, Any]] = {}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    roots = []
    for number, row in enumerate(rows, start=1):
        where = f"oasst1 row {number}"
        node = {**row, "replies": children[field(row, "message_id", where)]}
        nodes[node["message_id"]] = node
        if row.get("parent_id") is None:
            roots.append(node)
        else:
            children[row["parent_id"]].append(node)
    return [{"message_tree_id": root.get("message_tree_id", root["message_id"]), "prompt": root} for root in roots]


def oasst_record_pairs(
    record: dict[str, Any], where: str, source: str, lang: str | None = "en"
) -> Iterator[Pair | str]:
    """A local OASST record: an export tree (`prompt` is a message) or a derived pair (`prompt` is a turn list)."""
    if isinstance(record.get("prompt"), list):
        if lang is not None and record.get("lang", lang) != lang:
            yield "other language"
            return
        yield oasst_pairs_row(record, where, source)
        return
    yield from oasst_tree_pairs(record, where, source, lang)
