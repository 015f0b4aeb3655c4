"""The text side of text-to-image retrieval: CLIP BPE tokenisation and a CLIP-architecture text
transformer whose parameters are named exactly as in OpenAI's CLIP release.

Tokenizer: open-clip-torch's ``SimpleTokenizer`` (the package ships ``bpe_simple_vocab_16e6.txt.gz``;
nothing is downloaded). Its module is loaded on its own, without executing ``open_clip/__init__``,
which would import the whole model zoo (timm, huggingface_hub: about 2 s per process) for no use
here. Token ids are OpenAI's: 49406 start, 49407 end of text, vocabulary 49408.

:func:`tokenize` follows IRRA (``datasets/bases.py``): ``[SOT] + BPE(caption) + [EOT]``, zero
padded to the context length; a longer caption is truncated and its last token set to EOT. The
text feature is the final-layer output at the EOT position (the largest id in a row, as CLIP's
``text.argmax(-1)``) after ``ln_final``, times ``text_projection``.

Parameter names (``state_dict`` keys) are OpenAI's: ``token_embedding.weight``,
``positional_embedding`` (context x width), ``transformer.resblocks.N.{attn.in_proj_weight,
attn.in_proj_bias, attn.out_proj.weight, attn.out_proj.bias, ln_1.*, mlp.c_fc.*, mlp.c_proj.*,
ln_2.*}``, ``ln_final.*``, ``text_projection`` (width x embed dim). :func:`load_clip_text` reads such
a checkpoint (a text-only one, or a full CLIP state dict whose ``visual.*`` and ``logit_scale``
entries are reported and ignored) with safetensors or ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hcbench.errors import UserError

SOT_ID, EOT_ID, VOCAB_SIZE = 49406, 49407, 49408
MASK_ID = 49405  # IRRA's <|mask|>: it takes the id of the last BPE merge, which its vocabulary drops
# entries of a full OpenAI CLIP state dict that are not part of the text tower
IGNORED_KEYS = ("logit_scale", "input_resolution", "context_length", "vocab_size")


# --------------------------------------------------------------------------- tokenizer
def _tokenizer_module() -> Any:
    name = "hcbench._open_clip_tokenizer"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("text-to-image retrieval needs the CLIP BPE tokenizer of open-clip-torch: "
                          "pip install open-clip-torch")
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.py"
    try:
        mspec = importlib.util.spec_from_file_location(name, path)
        assert mspec is not None and mspec.loader is not None
        module = importlib.util.module_from_spec(mspec)
        sys.modules[name] = module
        mspec.loader.exec_module(module)
    except Exception:  # a future layout that needs its package: import it the ordinary way
        sys.modules.pop(name, None)
        import open_clip.tokenizer as module  # type: ignore[no-redef]
    return module


@cache
def get_tokenizer() -> Any:
    """open_clip's ``SimpleTokenizer`` with its bundled vocabulary (cached per process)."""
    tok = _tokenizer_module().SimpleTokenizer()
    if (tok.sot_token_id, tok.eot_token_id, len(tok.encoder)) != (SOT_ID, EOT_ID, VOCAB_SIZE):
        raise RuntimeError(f"unexpected CLIP vocabulary: sot {tok.sot_token_id}, eot {tok.eot_token_id}, "
                           f"{len(tok.encoder)} entries (expected {SOT_ID}, {EOT_ID}, {VOCAB_SIZE})")
    return tok


def tokenize(caption: str, context_length: int = 77) -> torch.Tensor:
    """(context_length,) int64 ids: SOT + BPE + EOT, truncated with EOT last, zero padded."""
    ids = [SOT_ID, *get_tokenizer().encode(caption), EOT_ID]
    if len(ids) > context_length:
        ids = ids[:context_length]
        ids[-1] = EOT_ID
    out = torch.zeros(context_length, dtype=torch.long)
    out[:len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def mask_tokens(tokens: torch.Tensor, gen: torch.Generator | None, rate: float = 0.15, mask_frac: float = 0.8,
                random_frac: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style masking as IRRA's MLM: each word token (0 < id < MASK_ID) is picked with
    probability ``rate``; a picked token becomes MASK_ID (``mask_frac``), a random word id
    (``random_frac``) or stays. Labels hold the original id at picked positions, 0 elsewhere; at
    least one token (position 1) is always picked."""
    tokens = tokens.clone()
    word = (tokens > 0) & (tokens < MASK_ID)
    u = torch.rand(tokens.shape, generator=gen)
    picked = word & (u < rate)
    if not bool(picked.any()):
        picked[1] = bool(word[1])
    labels = torch.where(picked, tokens, torch.zeros_like(tokens))
    v = u / rate
    to_mask = picked & (v < mask_frac)
    to_rand = picked & (v >= mask_frac) & (v < mask_frac + random_frac)
    tokens[to_mask] = MASK_ID
    rand = torch.randint(1, MASK_ID, tokens.shape, generator=gen)
    tokens[to_rand] = rand[to_rand]
    return tokens, labels


# --------------------------------------------------------------------------- model
class QuickGELU(nn.Module):
    """OpenAI CLIP's activation: x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"transformer width {width} is not divisible by {heads} heads")
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def init_weights(self) -> None:
        """CLIP's initialisation (``CLIP.initialize_parameters``)."""
        proj_std = self.width ** -0.5 * (2 * self.layers) ** -0.5
        attn_std, fc_std = self.width ** -0.5, (2 * self.width) ** -0.5
        for b in self.resblocks:
            nn.init.normal_(b.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(b.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(b.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(b.mlp.c_proj.weight, std=proj_std)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for b in self.resblocks:
            x = b(x, mask)
        return x


class TextEncoder(nn.Module):
    """CLIP text transformer (causal self-attention). ``forward(ids) -> (tokens B x L x E, eot B x E)``."""

    def __init__(self, embed_dim: int = 512, context_length: int = 77, width: int = 512, layers: int = 12,
                 heads: int = 8, vocab_size: int = VOCAB_SIZE):
        super().__init__()
        self.context_length, self.width, self.embed_dim = context_length, width, embed_dim
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        self.transformer.init_weights()
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = ids.shape[1]
        if n > self.context_length:
            raise ValueError(f"{n} tokens per caption exceed the text encoder's context {self.context_length}")
        x = self.token_embedding(ids) + self.positional_embedding[:n]
        x = self.transformer(x, self.attn_mask[:n, :n])
        x = self.ln_final(x) @ self.text_projection
        eot = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
        return x, eot


# --------------------------------------------------------------------------- checkpoints
class TextCheckpointError(UserError, ValueError):
    """A text checkpoint that cannot be loaded into the card's text encoder (names file and keys)."""


@dataclass
class TextLoadReport:
    path: str
    loaded: int
    ignored_visual: int = 0
    ignored_other: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{self.path}: {self.loaded} text-encoder tensors loaded"
        if self.ignored_visual:
            s += f"; {self.ignored_visual} visual.* tensors ignored (the image side is the benchmarked backbone)"
        if self.ignored_other:
            s += f"; ignored {', '.join(self.ignored_other)}"
        return s


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from ``.safetensors`` or a weights-only ``torch.load``; the
    ``state_dict``/``model`` wrappers and a ``module.`` prefix are removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: text checkpoint missing")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        import pickle

        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise TextCheckpointError(f"{path}: refused: the file needs code to unpickle (only tensors are "
                                      f"read; save a plain state dict or .safetensors): {e}") from None
        except RuntimeError as e:  # OpenAI's TorchScript archives land here
            raise TextCheckpointError(f"{path}: not a tensor checkpoint ({e}); a TorchScript archive must be "
                                      "converted to a state dict first") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise TextCheckpointError(f"{path}: expected a mapping of names to tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_clip_text(encoder: TextEncoder, path: str | Path) -> TextLoadReport:
    """Load an OpenAI-layout text tower into ``encoder``: every encoder key must be present with
    its shape; ``visual.*`` and :data:`IGNORED_KEYS` are skipped and reported; anything else is an
    unexpected key. Errors name the file and the keys."""
    sd = read_state_dict(path)
    visual = [k for k in sd if k.startswith("visual.")]
    other = sorted(k for k in sd if k in IGNORED_KEYS)
    text = {k: v for k, v in sd.items() if not k.startswith("visual.") and k not in IGNORED_KEYS}
    own = encoder.state_dict()
    missing = sorted(set(own) - set(text))
    unexpected = sorted(set(text) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:6])}"
                         f"{' ...' if len(unexpected) > 6 else ''}")
        raise TextCheckpointError(f"{path}: not an OpenAI CLIP text tower for this encoder ({'; '.join(parts)})")
    bad = [f"{k} {tuple(text[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if text[k].shape != v.shape]
    if bad:
        raise TextCheckpointError(f"{path}: shapes differ from the card's text encoder (width {encoder.width}, "
                                  f"context {encoder.context_length}, embed {encoder.embed_dim}): {'; '.join(bad[:4])}")
    encoder.load_state_dict({k: v.float() for k, v in text.items()}, strict=True)
    return TextLoadReport(str(path), len(text), len(visual), other)
