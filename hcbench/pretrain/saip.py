"""SAIP: self-supervised human-centric pretraining with an EMA copy of the student as expert.

* **CSM** cross-scale matching: DINO self-distillation of CLS tokens. The EMA sees the two
  global views; the student sees them, the local crops and two rescaled crops (the last local
  crop and the person view at the local size, each resized by a random factor from
  ``scales``). Projection head (3-layer MLP -> L2-normalised bottleneck -> weight-normalised
  prototypes), teacher centering (momentum 0.9) and temperatures (student 0.1, teacher 0.04
  after an optional warm-up from 0.07); pairs of the same view are skipped by the
  cross-entropy and instead distil the last block's relation maps (query-key attention and
  value-value relations, KL from the EMA's), the reference's ``csm_att_loss``.
* **CSR** cross-scale reconstruction: the second global view rescaled by ``csr_scale`` is
  masked (75%) with a mask drawn on the anchor view's grid and carried to the rescaled grid
  (so both scales hide the same image region); the student encodes only the kept patches up
  to an intermediate block; a light decoder, given the anchor view's CLS as an extra token,
  predicts the pixels; normalised-pixel MSE over the carried removed region.
* **CSS** cross-scale search: from a query (the person view -> the pasted instance; the
  rescaled last local crop -> the pasted part), a decoder predicts the query's mask inside the
  multi-person canvas encoded by the EMA model (intermediate tokens); BCE against the pasted
  masks' patch coverage.

Total loss: csm + csm_attn + csr + css_inst + css_part (unit weights, as in the reference).
EMA momentum 0.984 per optimizer step, constant: what the reference's code effectively runs
(0.996 per micro-batch, 4 micro-batches per step; its cosine schedule is read at the step within
the epoch and so never leaves its start). ``docs/saip.md`` lists every setting against the
reference (github.com/stoa-xh91/SAIPv1: ``models_pretrain.py``, ``pretrain_decoder.py``,
``main_pretrain.py``), with the reason for each difference and the recipe measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from hcbench.backbones.features import Backbone
from hcbench.pretrain.base import MethodOptions, PretrainMethod, cosine_ramp, ema_update, frozen_copy
from hcbench.pretrain.tokens import is_vit, normalize, patchify, vit_forward
from hcbench.pretrain.views import MultiViewBatch, rescale, resize


# --------------------------------------------------------------------------- CSM
class CSMHead(nn.Module):
    """DINO projection head: MLP -> L2-normalised bottleneck -> prototypes whose weight rows are
    normalised (weight norm with the gain fixed at 1, DINO's ``norm_last_layer``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 2048, bottleneck: int = 256, layers: int = 3):
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1)
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=False):
            mods += [nn.Linear(a, b), nn.GELU()]
        mods.append(nn.Linear(dims[-1], bottleneck))
        self.mlp = nn.Sequential(*mods)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck))
        for m in self.mlp:  # the reference's CSMDecoder: xavier-uniform MLP, zero biases
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # rows are normalised in forward, so only their directions matter (nn.Linear's default init)
        nn.init.kaiming_uniform_(self.prototypes, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        return F.linear(z, F.normalize(self.prototypes, dim=1))


def csm_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
             student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO cross-entropy between the centred, sharpened teacher softmax of each teacher view
    and the student's log-softmax of every *other* view (view ``i`` of both lists is the same
    image view, so pairs ``(i, i)`` are skipped)."""
    targets = [F.softmax((t.float() - center) / teacher_temp, -1).detach() for t in teacher]
    logs = [F.log_softmax(s.float() / student_temp, -1) for s in student]
    total, n = 0.0, 0
    for i, q in enumerate(targets):
        for v, log_p in enumerate(logs):
            if v == i:
                continue
            total = total + (-q * log_p).sum(-1).mean()
            n += 1
    if n == 0:
        raise ValueError("CSM needs at least two views")
    return total / n


def target_entropy(teacher: list[torch.Tensor], center: torch.Tensor, teacher_temp: float) -> torch.Tensor:
    """Mean entropy (nats) of the centred, sharpened teacher targets: ln K means uniform targets,
    the fixed point where CSM teaches nothing."""
    q = F.softmax((torch.cat(teacher).float() - center) / teacher_temp, -1)
    return -(q * q.clamp_min(1e-12).log()).sum(-1).mean()


def attention_relations(block: nn.Module, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two relation maps the reference reads from a ViT block: query-key attention
    softmax(q k^T / sqrt(d)) and value-value relations softmax(v v^T / sqrt(d)), each
    B x heads x N x N, for the token sequence ``seq`` entering ``block`` (a timm ViT block)."""
    attn = block.attn
    x = block.norm1(seq)
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    qk = (q @ k.transpose(-2, -1) * attn.scale).softmax(-1)
    vv = (v @ v.transpose(-2, -1) * attn.scale).softmax(-1)
    return qk, vv


def attention_loss(student: tuple[torch.Tensor, torch.Tensor], teacher: tuple[torch.Tensor, torch.Tensor],
                   eps: float = 1e-10) -> torch.Tensor:
    """KL(teacher || student) of the query-key and value-value relation maps (summed over the key
    axis, averaged over batch, heads and queries), qk + vv; ``eps`` as in the reference."""
    total = 0.0
    for s, t in zip(student, teacher, strict=True):
        t = t.detach().float() + eps
        total = total + (t * (t.log() - (s.float() + eps).log())).sum(-1).mean()
    return total


def teacher_temperature(progress: float, start: float, end: float, warmup: float) -> float:
    if warmup <= 0 or progress >= warmup:
        return end
    return start + (end - start) * progress / warmup


# --------------------------------------------------------------------------- CSR
def scale_consistent_mask(anchor_grid: tuple[int, int], grid: tuple[int, int], ratio: float, batch: int,
                          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE mask drawn on the anchor grid and carried to ``grid`` by nearest upsampling, as the
    reference's ``random_masking_with_ref_anchor``.

    Returns ``keep`` (B x K patch indices on ``grid``, K = N * (1 - ratio)), taken from the
    upsampled kept region first (random order inside each region), and ``removed`` (B x N): the
    upsampled *removed* region of the anchor mask, which the CSR loss is averaged over. Both
    scales so hide the same image region; a kept-region cell beyond K is neither encoded nor
    scored, a removed-region cell inside K (when the kept region is smaller) is both."""
    up = 1.0 - upsampled_removed(anchor_grid, grid, ratio, batch, device)
    n = grid[0] * grid[1]
    k = max(1, int(n * (1 - ratio)))
    keep = (up + 0.5 * torch.rand(batch, n, device=device)).argsort(1, descending=True)[:, :k].sort(1).values
    return keep, 1.0 - up


def anchor_mask(anchor_grid: tuple[int, int], ratio: float, batch: int, device: torch.device) -> torch.Tensor:
    """B x (ha*wa): 1 where the anchor view's patch is removed (int(N * (1 - ratio)) kept)."""
    la = anchor_grid[0] * anchor_grid[1]
    removed = torch.ones(batch, la, device=device)
    ids = torch.rand(batch, la, device=device).argsort(1)[:, : max(1, int(la * (1 - ratio)))]
    return removed.scatter_(1, ids, 0.0)


def upsampled_removed(anchor_grid: tuple[int, int], grid: tuple[int, int], ratio: float, batch: int,
                      device: torch.device) -> torch.Tensor:
    """An anchor mask (:func:`anchor_mask`) carried to ``grid``: B x N. Each cell takes the flag of the
    anchor patch that contains its centre ("nearest-exact"; the reference's "nearest" takes the
    cell at floor(i * ha / h), which shifts the mask up to one cell towards the top left)."""
    base = anchor_mask(anchor_grid, ratio, batch, device).view(batch, 1, *anchor_grid)
    return F.interpolate(base, size=tuple(grid), mode="nearest-exact").flatten(1)


class CSRDecoder(nn.Module):
    """MAE-style decoder: kept tokens + mask tokens on the full grid (2-D sin-cos positions), with
    the masked view's CLS and the anchor view's CLS as two leading tokens."""

    def __init__(self, in_dim: int, patch: int, dim: int = 512, depth: int = 8, heads: int = 16):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.dim, self.patch = dim, patch
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.prefix_pos = nn.Parameter(torch.zeros(1, 2, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, 4.0, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch * patch * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.prefix_pos, std=0.02)

    def forward(self, cls: torch.Tensor, visible: torch.Tensor, anchor_cls: torch.Tensor, keep: torch.Tensor,
                grid: tuple[int, int]) -> torch.Tensor:
        """``cls``/``anchor_cls`` B x C, ``visible`` B x K x C -> pixels B x N x (p*p*3)."""
        from timm.layers import build_sincos2d_pos_embed

        B, n = visible.shape[0], grid[0] * grid[1]
        vis = self.embed(visible)
        full = torch.scatter(self.mask_token.expand(B, n, self.dim).to(vis.dtype), 1,
                             keep.unsqueeze(-1).expand(-1, -1, self.dim), vis)
        pos = build_sincos2d_pos_embed(list(grid), self.dim, device=vis.device, dtype=vis.dtype)
        prefix = (torch.stack([self.embed(cls), self.embed(anchor_cls)], 1) + self.prefix_pos).to(vis.dtype)
        x = torch.cat([prefix, full + pos], 1)
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))[:, 2:]


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, removed: torch.Tensor,
                        norm_pix: bool = True) -> torch.Tensor:
    """MSE per patch (optionally on per-patch normalised pixels), averaged over removed patches."""
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    per_patch = (pred.float() - target.float()).pow(2).mean(-1)
    return (per_patch * removed).sum() / removed.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- CSS
def css_targets(canvas_masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """B x 2 x Hc x Wc pasted masks (instance, part) -> B x 2 x N patch targets: the fraction of
    each patch the paste covers (area pooling; the reference samples one pixel per patch)."""
    return F.interpolate(canvas_masks.float(), size=tuple(grid), mode="area").flatten(2)


class CSSDecoder(nn.Module):
    """Query tokens -> a dynamic mask kernel that reads the canvas tokens (cross-attention);
    the kernel is applied to a conv mask head over the canvas feature map."""

    def __init__(self, in_dim: int, dim: int = 512, depth: int = 2, heads: int = 4, mask_convs: int = 4):
        super().__init__()
        from timm.layers import Mlp
        from timm.models.vision_transformer import Block

        self.dim = dim
        self.q_embed = nn.Linear(in_dim, dim)
        self.q_blocks = nn.ModuleList(Block(dim, heads, 4.0, qkv_bias=True) for _ in range(depth))
        self.kv_embed = nn.Linear(in_dim, dim)
        self.kv_norm = nn.LayerNorm(dim)
        self.cross_norm = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.kernel_norm = nn.LayerNorm(dim)
        self.kernel = nn.Linear(dim, dim)
        convs: list[nn.Module] = [nn.Conv2d(in_dim, dim, 1), nn.GELU()]
        for _ in range(mask_convs - 1):
            convs += [nn.Conv2d(dim, dim, 3, padding=1), nn.GELU()]
        self.mask_head = nn.Sequential(*convs)

    def forward(self, query: torch.Tensor, ref: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``query`` B x (1+M) x C (CLS first), ``ref`` B x N x C canvas tokens -> logits B x N."""
        q = self.q_embed(query)
        for blk in self.q_blocks:
            q = blk(q)
        k = q[:, :1]
        kv = self.kv_norm(self.kv_embed(ref))
        k = k + self.cross_attn(self.cross_norm(k), kv, kv, need_weights=False)[0]
        k = k + self.mlp(self.mlp_norm(k))
        kernel = self.kernel(self.kernel_norm(k))  # B x 1 x dim
        fmap = self.mask_head(ref.transpose(1, 2).reshape(ref.shape[0], ref.shape[2], *grid)).flatten(2)
        return (kernel @ fmap)[:, 0] / math.sqrt(self.dim)


# --------------------------------------------------------------------------- method
@dataclass
class SAIPOptions(MethodOptions):
    csm_out_dim: int = 65536
    csm_hidden: int = 2048
    csm_bottleneck: int = 256
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.07
    teacher_temp_warmup: float = 0.0  # fraction of training; the reference default is 0 epochs
    center_momentum: float = 0.9
    csm_attn_weight: float = 1.0  # the reference's csm_att_loss (same-view relation maps), weight 1
    momentum: tuple[float, float] = (0.984, 0.984)  # see docs/saip.md: the reference's effective per-step EMA
    scales: tuple[float, ...] = (0.75, 0.875, 1.125, 1.25)
    csr_scale: float = 1.25
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    inter_blocks: int | None = None  # None: depth // 2 + 1 (the reference taps block 7 of 12)
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    css_dim: int = 512
    css_depth: int = 2
    css_heads: int = 16  # the reference builds CSSDecoder(**args) with decoder_num_heads=16
    css_mask_convs: int = 4

    @classmethod
    def small(cls) -> SAIPOptions:
        return cls(csm_out_dim=1024, csm_hidden=256, csm_bottleneck=64, decoder_dim=64, decoder_depth=2,
                   decoder_heads=4, css_dim=64, css_depth=1, css_heads=4, css_mask_convs=2)


class SAIP(PretrainMethod):
    name = "saip"
    needs_canvas_masks = True
    global_views = 2
    Options = SAIPOptions

    def __init__(self, student: Backbone, teacher: Backbone | None = None, options: SAIPOptions | None = None):
        super().__init__(student, None, options)  # the EMA copy is the expert; a given teacher is unused
        if not is_vit(student):
            raise TypeError(f"SAIP masks patches, so it needs a timm ViT student, not {student.spec or type(student)}")
        o, C = self.options, student.embed_dim
        depth = student.num_layers
        self.inter_blocks = int(o.inter_blocks or min(depth, depth // 2 + 1))
        if o.csm_attn_weight and depth < 2:
            raise ValueError("SAIP's relation-map term reads the input of the last block: the student needs >= 2 "
                             "blocks (or csm_attn_weight=0)")
        self.inter_norm = nn.LayerNorm(C, eps=1e-6)
        self.csm_head = CSMHead(C, o.csm_out_dim, o.csm_hidden, o.csm_bottleneck)
        self.csr_decoder = CSRDecoder(C, student.stride, o.decoder_dim, o.decoder_depth, o.decoder_heads)
        self.css_decoder = CSSDecoder(C, o.css_dim, o.css_depth, o.css_heads, o.css_mask_convs)
        self.ema = nn.ModuleDict({"backbone": frozen_copy(student), "csm_head": frozen_copy(self.csm_head),
                                  "inter_norm": frozen_copy(self.inter_norm)})
        self.register_buffer("center", torch.zeros(1, o.csm_out_dim))

    def _online(self) -> list[nn.Module]:
        return [self.student, self.csm_head, self.inter_norm]

    def after_step(self, progress: float) -> None:
        m = cosine_ramp(*self.options.momentum, progress)
        ema_update(self._online(), [self.ema["backbone"], self.ema["csm_head"], self.ema["inter_norm"]], m)

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        total = teacher_out.float().sum(0, keepdim=True)
        count = torch.tensor(float(teacher_out.shape[0]), device=total.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        m = self.options.center_momentum
        self.center.mul_(m).add_(total / count, alpha=1 - m)

    def _inter(self, seq: torch.Tensor) -> torch.Tensor:
        return self.inter_norm(seq)

    def forward(self, batch: MultiViewBatch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        o, student, k = self.options, self.student, self.inter_blocks
        if batch.globals.shape[1] < 2:
            raise ValueError("SAIP needs two global views per image (ViewConfig.n_global >= 2)")
        B, L = len(batch), batch.locals.shape[1]
        p = student.stride
        g1, g2 = batch.global_view(0), batch.global_view(1)
        local_size = tuple(batch.locals.shape[-2:])
        pick = torch.randint(len(o.scales), (2,)).tolist()

        # ---- student: two global views, local crops, rescaled part crop and rescaled person view
        last = student.num_layers - 1  # the sequence entering the last block (relation maps)
        sg = vit_forward(student, torch.cat([g1, g2]), taps=(k, last))
        inter_g1 = self._inter(sg.taps[k][:B])
        part = rescale(batch.local_view(L - 1), o.scales[pick[0]], p)
        sp = vit_forward(student, part, taps=(k,))
        region = rescale(resize(g1, local_size), o.scales[pick[1]], p)
        student_cls = [sg.cls[:B], sg.cls[B:]]
        if L > 1:
            sl = vit_forward(student, batch.locals[:, : L - 1].transpose(0, 1).flatten(0, 1))
            student_cls += list(sl.cls.chunk(L - 1))
        student_cls += [sp.cls, vit_forward(student, region).cls]
        s_out = self.csm_head(torch.cat(student_cls)).chunk(len(student_cls))

        # ---- EMA expert: the two global views (CSM targets) and the canvas (CSS search space)
        with torch.no_grad():
            ema_bb = self.ema["backbone"]
            eg = vit_forward(ema_bb, torch.cat([g1, g2]), taps=(last,) if o.csm_attn_weight else ())
            t_raw = self.ema["csm_head"](eg.cls)
            ec = vit_forward(ema_bb, batch.canvas, blocks=k, final_norm=False)
            ref = self.ema["inter_norm"](torch.cat([ec.prefix, ec.patches], 1))[:, ec.prefix.shape[1]:]
        temp = teacher_temperature(progress, o.warmup_teacher_temp, o.teacher_temp, o.teacher_temp_warmup)
        csm = csm_loss(list(s_out), list(t_raw.chunk(2)), self.center, o.student_temp, temp)
        entropy = target_entropy(list(t_raw.chunk(2)), self.center, temp)
        if o.csm_attn_weight:  # same-view pairs: the student's relation maps follow the EMA's
            with torch.no_grad():
                t_rel = attention_relations(ema_bb.model.blocks[-1], eg.taps[last])
            csm_attn = attention_loss(attention_relations(student.model.blocks[-1], sg.taps[last]), t_rel)
        else:
            csm_attn = torch.zeros((), device=csm.device)
        if self.training:
            self.update_center(t_raw)

        # ---- CSR: masked, rescaled second view; the anchor view's CLS joins the decoder
        view = rescale(g2, o.csr_scale, p)
        vgrid = (view.shape[-2] // p, view.shape[-1] // p)
        keep, removed = scale_consistent_mask(sg.grid, vgrid, o.mask_ratio, B, view.device)
        sm = vit_forward(student, view, keep=keep, blocks=k, final_norm=False)
        vis = self._inter(torch.cat([sm.prefix, sm.patches], 1))
        P = sm.prefix.shape[1]
        pred = self.csr_decoder(vis[:, 0], vis[:, P:], inter_g1[:, 0], keep, vgrid)
        csr = reconstruction_loss(pred, patchify(normalize(view, student), p), removed, o.norm_pix_loss)

        # ---- CSS: find the pasted instance (person view) and part (last local crop) in the canvas
        masks = css_targets(batch.canvas_masks, ec.grid)  # B x 2 x N
        sel = batch.canvas_synthetic.bool()
        inst_logits = self.css_decoder(inter_g1, ref, ec.grid)
        part_logits = self.css_decoder(self._inter(sp.taps[k]), ref, ec.grid)
        if bool(sel.any()):
            css_inst = F.binary_cross_entropy_with_logits(inst_logits[sel].float(), masks[sel, 0])
            css_part = F.binary_cross_entropy_with_logits(part_logits[sel].float(), masks[sel, 1])
        else:  # only real crowd canvases (no masks) in this batch: keep the graph, add nothing
            css_inst = css_part = 0.0 * (inst_logits.sum() + part_logits.sum())
        loss = csm + o.csm_attn_weight * csm_attn + csr + css_inst + css_part
        return {"loss": loss, "csm": csm.detach(), "csm_attn": csm_attn.detach(), "csr": csr.detach(),
                "css_inst": css_inst.detach(), "css_part": css_part.detach(), "csm_entropy": entropy.detach()}
