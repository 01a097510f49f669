"""The recurrent cells the harness knows: one table of their facts, and each cell's update with its tangent map.

Every other module asks a cell's :class:`CellSpec` instead of testing its name: the config's allowed values,
the module a layer is built from, the gate blocks of the initialisation schemes, the state layout the probe and
the diagnostics read, which cells the fused probe is exact for, and the report's labels and colours.
Adding a cell is one entry in :data:`CELLS` (see docs/architecture.md, "Add a cell").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from rnnstudy.lazy import LazyModule

torch = LazyModule("torch")  # the config path reads this table without paying for torch's import
nn = LazyModule("torch.nn")

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import RNNBase

#: A layer's update from its pre-activations: (W_ih x_t + b_ih, W_hh h_{t-1} + b_hh, state) -> the next state; the
#: state is (h,) or (h, c). Shapes broadcast, so stacked members (K, B, gates x H) take one call for all.
Update = Callable[["Tensor", "Tensor", tuple["Tensor", ...]], tuple["Tensor", ...]]
#: How a packed run of a point's seeds computes (:meth:`CellSpec.executor`): ``stacked``, one batched matmul per time step
#: for all members; ``loop``, each member's fused layer in turn within the one step; ``apart``, packing loses there, so
#: a sweep trains the seeds one run each.
Executor = Literal["stacked", "loop", "apart"]
#: A layer's update with its exact tangent map: (s, x, V) -> (F(s, x), dF/ds V); s is the full state (B, n), V (B, n, k).
Push = Callable[["Tensor", "Tensor", "Tensor | None"], tuple["Tensor", "Tensor | None"]]


@dataclass(frozen=True)
class CellSpec:
    """One cell type: its names and colour, how its layer is built, its gate blocks and state, and its update written out."""

    label: str
    colour: str
    #: Gate blocks of W_ih, W_hh and the biases, in PyTorch's order (LSTM: i, f, g, o; GRU: r, z, n).
    gates: int
    #: The recurrence sees h_{t-1} only through W_hh h_{t-1}, so a perturbation injected through W_hh is exact
    #: (a GRU multiplies W_hn h_{t-1} by its reset gate, so it is not).
    injectable: bool
    #: (input_size, hidden_size, device) -> the single-layer fused module.
    module: Callable[[int, int, str | None], RNNBase]
    #: The layer -> its update with its tangent map (:data:`Push`) for the diagnostics, written out for a module of its
    #: own; None for an ``nn.RNNBase`` cell, whose push is its ``update`` with forward-mode autodiff (:meth:`push`).
    step: Callable[[RNNBase], Push] | None
    #: The update from pre-activations (:data:`Update`), written out for packed runs' stacked computation and the
    #: diagnostics (None: the cell is not an ``nn.RNNBase`` and packs as a loop).
    update: Update | None
    #: The states the cell carries, in the order the full state stacks them: h, and c for a separate cell state.
    state: tuple[str, ...] = ("h",)
    #: The gate block whose sigmoid keeps the state (timescale 1 / (1 - gate)); None: the cell has no gates.
    keep_gate: int | None = None
    #: The gate block that writes new content apart from the keep gate (chrono sets its bias to minus the keep gate's);
    #: None where the keep gate also writes (the GRU's z) or there are no gates.
    write_gate: int | None = None
    #: The measured executor of a packed point per device type (benchmarks/RESULTS.md, "Packed runs": whole processes,
    #: a 5-seed point at hidden 32, batch 64, T = 40 and 160, 1500 steps, this project's 2-core CPU); a device type not
    #: measured (every GPU so far) takes the loop.
    packed: dict[str, Executor] = field(default_factory=dict)
    #: The layer is an ``nn.RNNBase`` (PyTorch's weight names and gate blocks: the per-block initialisation schemes, the
    #: stacked packing and the injected probe read them); False for a module of its own with its own schemes.
    rnnbase: bool = True
    #: The hidden size must be a multiple of this (the LRU's holds real and imaginary parts).
    hidden_multiple: int = 1

    def push(self, layer: RNNBase) -> Push:
        """The layer's update with its exact tangent map (:data:`Push`)."""
        return self.step(layer) if self.step is not None else _update_push(layer, self)

    def executor(self, asked: str = "auto", device: str = "cpu") -> Executor:
        """The executor a packed run uses; ``auto`` follows :attr:`packed` (the loop where it was not measured)."""
        if asked == "auto":
            return self.packed.get(device, "loop")
        if asked == "stacked" and self.update is None:
            raise ValueError(f"executor 'stacked' needs a cell written as an update; {self.label} is not; "
                             "allowed: auto, loop, apart")  # fmt: skip
        return asked  # type: ignore[return-value]

    def packs(self, device: str) -> bool:
        """Whether a point's seeds of this cell train faster packed than apart on this device (the measured rule)."""
        return self.executor("auto", device) != "apart"

    def state_size(self, hidden: int) -> int:
        """The full state's width: h, or h and c stacked."""
        return len(self.state) * hidden


def _tanh_update(gi: Tensor, gh: Tensor, s: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return ((gi + gh).tanh(),)


def _relu_update(gi: Tensor, gh: Tensor, s: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return ((gi + gh).relu(),)


def lstm_gates(preactivation: Tensor) -> tuple[Tensor, ...]:
    """The LSTM's gates i, f, g, o from its pre-activations W_ih x_t + b_ih + W_hh h_{t-1} + b_hh (PyTorch's row order);
    the probe's cell-state recursion reads them too."""
    i, f, g, o = preactivation.chunk(4, dim=-1)
    return i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()


def _lstm_update(gi: Tensor, gh: Tensor, s: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    i, f, g, o = lstm_gates(gi + gh)
    c = f * s[1] + i * g
    return o * c.tanh(), c


def _gru_update(gi: Tensor, gh: Tensor, s: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    ir, iz, in_ = gi.chunk(3, dim=-1)
    hr, hz, hn = gh.chunk(3, dim=-1)
    r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
    return ((1 - z) * (in_ + r * hn).tanh() + z * s[0],)


def _update_push(layer: RNNBase, spec: CellSpec) -> Push:
    """An ``nn.RNNBase`` cell's update from its weights, with its tangent map by forward-mode autodiff of that update
    (exact, as a derivative written out would be): one written form of each cell's equations, its ``update``."""
    H = layer.hidden_size

    def step(s: Tensor, x: Tensor) -> Tensor:
        state = s.split(H, dim=-1)
        gi = x @ layer.weight_ih_l0.T + layer.bias_ih_l0
        gh = state[0] @ layer.weight_hh_l0.T + layer.bias_hh_l0
        return torch.cat(spec.update(gi, gh, state), dim=-1)  # type: ignore[misc]

    def push(s: Tensor, x: Tensor, v: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if v is None:
            return step(s, x), None
        along = torch.func.vmap(lambda u: torch.func.jvp(lambda r: step(r, x), (s,), (u,))[1], in_dims=-1, out_dims=-1)
        return step(s, x), along(v)

    return push


def _scan(name: str) -> Callable[[int, int, str | None], RNNBase]:
    def make(i: int, h: int, device: str | None = None) -> RNNBase:
        from rnnstudy.model import scans  # torch, only once a layer is built

        return getattr(scans, name)(i, h, device)

    return make


def _scan_step(name: str) -> Callable[[RNNBase], Push]:
    def make(layer: RNNBase) -> Push:
        from rnnstudy.model import scans

        return getattr(scans, name)(layer)

    return make


def _rnn(nonlinearity: str) -> Callable[[int, int, str | None], RNNBase]:
    return lambda i, h, device=None: nn.RNN(i, h, nonlinearity=nonlinearity, device=device)


CELLS: dict[str, CellSpec] = {
    "rnn_tanh": CellSpec("tanh RNN", "#d62728", 1, True, _rnn("tanh"), None, _tanh_update,
                         packed={"cpu": "stacked"}),  # fmt: skip
    "rnn_relu": CellSpec("ReLU RNN", "#ff7f0e", 1, True, _rnn("relu"), None, _relu_update,
                         packed={"cpu": "stacked"}),  # fmt: skip
    "lstm": CellSpec(
        "LSTM", "#1f77b4", 4, True, lambda i, h, device=None: nn.LSTM(i, h, device=device), None, _lstm_update,
        state=("h", "c"), keep_gate=1, write_gate=0,
        packed={"cpu": "apart"},  # its fused oneDNN kernel beats both packed forms (loop 0.68x, stacked 0.45x at T = 160)
    ),  # fmt: skip
    "gru": CellSpec(
        "GRU", "#2ca02c", 3, False, lambda i, h, device=None: nn.GRU(i, h, device=device), None, _gru_update,
        keep_gate=1, packed={"cpu": "stacked"},
    ),  # fmt: skip
    "mingru": CellSpec("minGRU", "#9467bd", 2, False, _scan("MinGRU"), _scan_step("mingru_step"), None, keep_gate=0,
                       rnnbase=False),  # its keep logit is block 0 of its input weights and bias (bias_ih_l0)
    "lru": CellSpec("LRU", "#8c564b", 1, False, _scan("LRU"), _scan_step("lru_step"), None, rnnbase=False,
                    hidden_multiple=2),  # fmt: skip
}
Cell = Literal[tuple(CELLS)]  # type: ignore[valid-type]
#: Cells built as ``nn.RNNBase`` layers (the per-gate-block initialisation schemes apply to them).
RNNBASE = tuple(name for name, spec in CELLS.items() if spec.rnnbase)
#: Cells whose fused probe is exact.
INJECTABLE = tuple(name for name, spec in CELLS.items() if spec.injectable)
#: Cells with a keep gate (their gate timescales exist; chrono applies).
GATED = tuple(name for name, spec in CELLS.items() if spec.keep_gate is not None)
#: Cells whose keep gate has a separate write gate (the forget-gate bias applies).
FORGET_GATED = tuple(name for name, spec in CELLS.items() if spec.write_gate is not None)
CELL_ORDER = list(CELLS)
CELL_LABELS = {name: spec.label for name, spec in CELLS.items()}
CELL_COLOURS = {name: spec.colour for name, spec in CELLS.items()}
