"""DPAL: Dynamic Pattern Alignment Learning (distil a large frozen teacher into a small ViT).

The student's tokens go through **D-PaDe**, a small dynamic mixture of experts: three
learned pattern queries attend to the student tokens and a generator turns each into a
per-image projection (student dim -> teacher dim); a router token attends to the tokens and
softly weights the three projections; the router is trained towards the known pattern of
its input (0 global: CLS tokens, 1 local: patch tokens of a person view, 2 relation: patch
tokens of the multi-person canvas). Losses, unit weights: **global** (MSE of the teacher's
global-view CLS vs the decoded student CLS of every view), **local** (MSE of decoded vs
teacher patch tokens weighted by a shape mask from the first principal component of the
teacher's tokens; person view and canvas), **relation** (KL of the teacher's vs the student's
token-similarity softmax on the canvas, self-similarities left out), plus the routing CE at 0.1 for the first 10% of
training and 0.01 after (the reference switches at epoch 20 of 200).

Reference: github.com/Hermine-D/DPAL (``pretrain_moe_decoder.py``, ``main_align_pretrain_moe.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hcbench.backbones.features import Backbone
from hcbench.pretrain.base import MethodOptions, PretrainMethod
from hcbench.pretrain.tokens import encode, resize_tokens
from hcbench.pretrain.views import MultiViewBatch

GLOBAL, LOCAL, RELATION = 0, 1, 2


# --------------------------------------------------------------------------- losses
def global_loss(student_cls: torch.Tensor, teacher_cls: torch.Tensor) -> torch.Tensor:
    """Mean MSE between every view's decoded CLS (V x B x C, or B x C) and the teacher's B x C."""
    if student_cls.ndim == 2:
        student_cls = student_cls[None]
    return F.mse_loss(student_cls, teacher_cls[None].expand_as(student_cls))


def local_loss(student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token MSE (B x N x C) averaged with per-token ``weights`` B x N (the shape mask)."""
    per_token = (student.float() - teacher.float()).pow(2).mean(-1)
    if weights is None:
        return per_token.mean()
    return (per_token * weights).sum() / weights.sum().clamp_min(1e-6)


def similarity_log_softmax(tokens: torch.Tensor, tau: float) -> torch.Tensor:
    """Row-wise log-softmax of the cosine-similarity matrix B x N x N at temperature ``tau``
    (cosine, so students and teachers of different widths and scales compare). A token's
    similarity to itself (always 1) carries no relation and would dominate each row, so the
    diagonal is left out (probability 0)."""
    z = F.normalize(tokens.float(), dim=-1)
    sim = z @ z.transpose(1, 2) / tau
    eye = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    return F.log_softmax(sim.masked_fill(eye, float("-inf")), dim=-1)


def relation_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """KL(teacher || student) of token-similarity distributions, summed over keys, averaged over
    query tokens and images. ``student``/``teacher``: B x N x C (same N, any C)."""
    log_p_t = similarity_log_softmax(teacher, tau)
    log_p_s = similarity_log_softmax(student, tau)
    kl = torch.exp(log_p_t) * (log_p_t - log_p_s)
    return kl.masked_fill(torch.isinf(log_p_t), 0.0).sum(-1).mean()  # 0 * log 0 = 0 on the diagonal


@torch.no_grad()
def shape_mask(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Soft foreground mask B x N in [0, 1] from the first principal component of each image's
    patch tokens (B x N x C), oriented so that the grid's border (mostly background in person
    crops and canvases) scores low. A map with no variation gives all ones."""
    x = tokens.float()
    x = x - x.mean(1, keepdim=True)
    # top eigenvector of the N x N Gram matrix = the tokens' scores on PC1 (up to scale/sign)
    with torch.autocast(x.device.type, enabled=False):
        _, vecs = torch.linalg.eigh(x @ x.transpose(1, 2))
    score = vecs[..., -1]
    h, w = grid
    border = torch.zeros(h, w, dtype=torch.bool, device=x.device)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    border = border.flatten()
    if bool(border.all()):  # a grid too small to have an inside: orient by the majority instead
        flip = (score > 0).float().mean(1) > 0.5
    else:
        flip = score[:, border].mean(1) > score[:, ~border].mean(1)
    score = torch.where(flip[:, None], -score, score)
    lo, hi = score.min(1, keepdim=True).values, score.max(1, keepdim=True).values
    span = hi - lo
    mask = (score - lo) / span.clamp_min(1e-12)
    flat = x.pow(2).sum((1, 2)) <= 1e-12 * x.shape[1]
    return torch.where(flat[:, None], torch.ones_like(mask), mask)


# --------------------------------------------------------------------------- D-PaDe
def _heads(dim: int, want: int) -> int:
    return max(h for h in range(1, want + 1) if dim % h == 0)


@dataclass
class DecoderOutput:
    tokens: torch.Tensor  # B x N x teacher_dim
    logits: torch.Tensor  # B x 3 router logits
    weights: torch.Tensor  # B x 3 soft expert weights


class DPaDe(nn.Module):
    """Dynamic pattern decoder: student tokens B x N x Cs -> B x N x Ct via a per-image mixture
    of three generated projections. ``inter_dim`` first reduces wide students (the reference
    uses 192 for a ViT-B student) to keep the generated Cs x Ct matrices affordable."""

    def __init__(self, in_dim: int, out_dim: int, num_heads: int = 16, inter_dim: int | None = None,
                 num_patterns: int = 3):
        super().__init__()
        d = inter_dim or in_dim
        self.dim, self.out_dim, self.num_patterns = d, out_dim, num_patterns
        heads = _heads(d, num_heads)
        self.reduce = nn.Sequential(nn.Linear(in_dim, d), nn.GELU(), nn.LayerNorm(d)) if inter_dim else nn.Identity()
        # token path: one self-attention over the student tokens
        self.token_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.token_norm = nn.LayerNorm(d)
        # router: a learned token reads the tokens and scores the patterns
        self.router_token = nn.Parameter(torch.zeros(1, 1, d))
        self.router_norm = nn.LayerNorm(d)
        self.router_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.router_head = nn.Linear(d, num_patterns, bias=False)
        # expert generator: pattern queries -> self-attn -> cross-attn to the tokens -> d x Ct matrices
        self.queries = nn.Parameter(torch.zeros(1, num_patterns, d))
        self.query_norm1, self.query_norm2, self.query_norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.query_self = nn.MultiheadAttention(d, heads, batch_first=True)
        self.query_cross = nn.MultiheadAttention(d, heads, batch_first=True)
        self.generator = nn.Sequential(nn.Linear(d, d * out_dim), nn.GELU(), nn.LayerNorm(d * out_dim))
        self.out_norm = nn.LayerNorm(out_dim)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.router_token, std=0.02)
        nn.init.trunc_normal_(self.queries, std=0.02)

    def forward(self, tokens: torch.Tensor) -> DecoderOutput:
        B = tokens.shape[0]
        x = self.reduce(tokens)
        h = self.token_norm(x + self.token_attn(x, x, x, need_weights=False)[0])
        r = self.router_norm(self.router_token.expand(B, -1, -1))
        logits = self.router_head(self.router_attn(r, h, h, need_weights=False)[0][:, 0])
        weights = logits.softmax(-1)
        q = self.queries.expand(B, -1, -1)
        qn = self.query_norm1(q)
        q = q + self.query_self(qn, qn, qn, need_weights=False)[0]
        q = q + self.query_cross(self.query_norm2(q), x, x, need_weights=False)[0]
        experts = self.generator(self.query_norm3(q)).view(B, self.num_patterns, self.dim, self.out_dim)
        # soft mixture of the generated projections; 1/sqrt(d) keeps h @ proj at unit scale
        proj = torch.einsum("bk,bkio->bio", weights.to(experts.dtype), experts) / math.sqrt(self.dim)
        return DecoderOutput(self.out_norm(F.gelu(h @ proj)), logits, weights)


def routing_loss(logits: torch.Tensor, pattern: int) -> torch.Tensor:
    """Per-sample cross-entropy of the router towards the input's known pattern id."""
    target = torch.full((logits.shape[0],), pattern, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target, reduction="none")


# --------------------------------------------------------------------------- method
@dataclass
class DPALOptions(MethodOptions):
    decoder_heads: int = 16  # the reference's align_num_heads
    inter_dim: int | None = None
    route_weight: tuple[float, float] = (0.1, 0.01)
    route_switch: float = 0.1  # fraction of training at the high routing weight (20/200 epochs)
    relation_tau: float = 0.1

    @classmethod
    def small(cls) -> DPALOptions:
        return cls(decoder_heads=4)


class DPAL(PretrainMethod):
    name = "dpal"
    needs_teacher = True
    Options = DPALOptions

    def __init__(self, student: Backbone, teacher: Backbone | None = None, options: DPALOptions | None = None):
        super().__init__(student, teacher, options)
        o = self.options
        self.decoder = DPaDe(student.embed_dim, teacher.embed_dim, o.decoder_heads, o.inter_dim)

    def route_weight(self, progress: float) -> float:
        hi, lo = self.options.route_weight
        return hi if progress < self.options.route_switch else lo

    def forward(self, batch: MultiViewBatch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        o, teacher = self.options, self.teacher
        person, canvas = batch.global_view(0), batch.canvas
        B, L = batch.locals.shape[:2]
        with torch.no_grad():
            t_cls, t_tok, t_grid = encode(teacher, person)
            _, t_ctok, t_cgrid = encode(teacher, canvas)
            w_person, w_canvas = shape_mask(t_tok, t_grid), shape_mask(t_ctok, t_cgrid)
        s_cls, s_tok, s_grid = encode(self.student, person)
        l_cls, _, _ = encode(self.student, batch.locals.flatten(0, 1))
        _, s_ctok, s_cgrid = encode(self.student, canvas)

        # global pattern: the CLS of every view (person view, then each local crop)
        views_cls = torch.cat([s_cls, l_cls.view(B, L, -1).transpose(0, 1).reshape(L * B, -1)])
        d_glob = self.decoder(views_cls[:, None])
        glob = global_loss(d_glob.tokens[:, 0].view(1 + L, B, -1), t_cls)
        # local pattern on the person view, relation pattern on the canvas
        d_loc = self.decoder(s_tok)
        d_rel = self.decoder(s_ctok)
        local = 0.5 * (local_loss(resize_tokens(d_loc.tokens, s_grid, t_grid), t_tok, w_person)
                       + local_loss(resize_tokens(d_rel.tokens, s_cgrid, t_cgrid), t_ctok, w_canvas))
        relation = relation_loss(resize_tokens(s_ctok, s_cgrid, t_cgrid), t_ctok, o.relation_tau)
        route = torch.cat([routing_loss(d_glob.logits, GLOBAL), routing_loss(d_loc.logits, LOCAL),
                           routing_loss(d_rel.logits, RELATION)]).mean()
        loss = glob + local + relation + self.route_weight(progress) * route
        return {"loss": loss, "global": glob.detach(), "local": local.detach(), "relation": relation.detach(),
                "route": route.detach()}
