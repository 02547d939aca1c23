"""The torch-like API: ``Trainer`` mirrors the library's ``TrainConfig``
(``torch.optim``'s optimizer names, options and defaults), ``Model`` is
what it trains."""

import mmap
import os
import sys
import warnings

import numpy as np

from . import _retroprop

#: The options of each optimizer, by torch's keyword names.
OPTIMIZER_OPTIONS = (
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "amsgrad",
    "momentum",
    "dampening",
    "nesterov",
    "alpha",
    "centered",
    "lr_decay",
    "initial_accumulator_value",
)


def optimizer_defaults(name):
    """The options of optimizer ``name`` (``sgd``, ``adam``, ``adamw``,
    ``rmsprop``, ``adagrad``) with torch's defaults, as a dict of text."""
    return dict(_retroprop.optimizer_defaults(name))


def as_rows(x, name="x"):
    """``x`` as a float32 C-contiguous aligned 2-D array. An array that
    already is one is returned as it is (no copy); anything
    ``numpy.asarray`` accepts (lists, pandas frames, float64) is converted
    once."""
    rows = np.asarray(x, dtype=np.float32, order="C")
    if not rows.flags.aligned:
        rows = rows.copy()
    if rows.ndim == 1:
        raise ValueError(
            f"{name} must be 2-D [rows, features], got shape {rows.shape}; "
            "reshape a single feature with x.reshape(-1, 1)"
        )
    if rows.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, features], got shape {rows.shape}")
    return rows


def _batch_rows(batch_size):
    """``batch_size`` for the native trainer: None (not given), or rows,
    0 for the whole data set (``"full"``)."""
    if batch_size is None:
        return None
    if isinstance(batch_size, str):
        if batch_size != "full":
            raise ValueError(f"batch_size must be a number of rows or 'full', got {batch_size!r}")
        return 0
    return int(batch_size)


def _weights(weights, rows, name="sample_weight"):
    """``weights`` as float32 ``[rows]`` (None stays None)."""
    if weights is None:
        return None
    w = np.ascontiguousarray(weights, dtype=np.float32)
    if w.ndim != 1 or len(w) != rows:
        raise ValueError(f"{name} must have one weight per row ({rows}), got shape {w.shape}")
    return w


def _option_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "/".join(repr(float(v)) for v in value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value))
    raise TypeError(f"an optimizer option must be a number, a bool or a pair, got {value!r}")


#: What a member of a run may have of its own (``Trainer(members=k)``).
MEMBER_OPTIONS = (
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "momentum",
    "dampening",
    "alpha",
    "lr_decay",
    "initial_accumulator_value",
    "seed",
    "dropout",
    "lr_schedule",
    "rows",
    "validation_rows",
    "weights",
)

#: The per-member settings that are always a member's own (a list of k).
_ALWAYS_OWN = ("rows", "validation_rows", "weights")


def _is_pair(value):
    return isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2 and all(
        isinstance(v, (int, float, np.integer, np.floating)) for v in value
    )


def _per_member(count, settings):
    """The settings given a value a member, ``{name: [k values]}``: a list
    of ``count`` values (for ``betas``, a list of pairs; ``rows``,
    ``validation_rows`` and ``weights`` are always a member's). Without
    members, any such list is an error naming the setting."""
    own = {}
    for name, value in settings.items():
        always = name in _ALWAYS_OWN
        listed = isinstance(value, list) and not (name == "betas" and _is_pair(value))
        if value is None or not (listed or always):
            continue
        if count is None:
            raise ValueError(f"{name}: a value a member needs members=k; one network takes one value")
        if not isinstance(value, list) or len(value) != count:
            given = len(value) if isinstance(value, list) else "not a list"
            raise ValueError(f"{name}: give a list of {count} values, one a member (got {given})")
        own[name] = value
    return own


def _member_settings(count, own):
    """Each member's own settings as ``NativeMembers`` takes them."""
    members = []
    for m in range(count):
        options = [(k, _option_text(own[k][m])) for k in OPTIMIZER_OPTIONS if k in own and own[k][m] is not None]
        member = dict(options=options)
        if own.get("seed") is not None and own["seed"][m] is not None:
            member["seed"] = int(own["seed"][m])
        if own.get("dropout") is not None and own["dropout"][m] is not None:
            member["dropout"] = float(own["dropout"][m])
        if own.get("lr_schedule") is not None and own["lr_schedule"][m] is not None:
            member["lr_schedule"] = str(own["lr_schedule"][m])
        for name in ("rows", "validation_rows"):
            if own.get(name) is not None and own[name][m] is not None:
                rows = np.asarray(own[name][m])
                if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.dtype.kind not in "iu")):
                    raise ValueError(f"{name}[{m}]: row indices must be non-negative integers [rows]")
                member[name] = np.ascontiguousarray(rows, dtype=np.uint32)
        if own.get("weights") is not None and own["weights"][m] is not None:
            weights = np.asarray(own["weights"][m])
            if weights.ndim != 1 or weights.dtype.kind not in "iuf":
                raise ValueError(f"weights[{m}]: member {m}'s weights must be numbers, one a row [rows]")
            member["weights"] = np.ascontiguousarray(weights, dtype=np.float32)
        members.append(member)
    return members


def _targets(y, loss, name="y"):
    """``(classes, values)``: class indices as uint32 for cross_entropy,
    float32 ``[rows, width]`` values otherwise."""
    if loss == "cross_entropy":
        labels = np.asarray(y)
        if labels.ndim != 1:
            raise ValueError(f"{name}: cross_entropy needs class indices of shape [rows], got {labels.shape}")
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                row = int(np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))[0])
                raise ValueError(f"{name}, row {row}: class label {labels[row]} is not a non-negative integer")
        elif labels.dtype.kind not in "iu":
            raise TypeError(f"{name}: class indices must be integers, got dtype {labels.dtype}")
        if labels.size and labels.min() < 0:
            row = int(np.argmin(labels))
            raise ValueError(f"{name}, row {row}: class label {labels[row]} is not a non-negative integer")
        return np.ascontiguousarray(labels, dtype=np.uint32), None
    values = np.asarray(y, dtype=np.float32)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    return None, np.ascontiguousarray(values)


#: The files ``fit``, ``evaluate`` and ``predict`` read by their suffix.
PARQUET_SUFFIXES = (".parquet", ".pq")


def _is_table(x):
    """Whether ``x`` is an Arrow table to read by its columns: anything
    with ``__arrow_c_stream__`` (a pyarrow Table, RecordBatch or
    RecordBatchReader, a polars DataFrame) but a pandas frame, which goes
    through ``numpy.asarray`` as it always has."""
    if isinstance(x, np.ndarray) or not hasattr(x, "__arrow_c_stream__"):
        return False
    return type(x).__module__.split(".")[0] != "pandas"


def _is_mapped(x):
    """Whether ``x`` is an array whose memory is a memory map
    (``numpy.memmap``, ``numpy.load(mmap_mode=...)``, or a view of one)."""
    while isinstance(x, np.ndarray):
        x = x.base
        if isinstance(x, mmap.mmap):
            return True
    return False


def _map_file(x):
    """`` of FILE`` for a map of a file NumPy names (``numpy.memmap``)."""
    while isinstance(x, np.ndarray):
        if isinstance(x, np.memmap) and getattr(x, "filename", None):
            return f" of {x.filename}"
        x = x.base
    return ""


def _is_source(x):
    """Whether ``x`` is read a part at a time rather than held: a path, a
    table, a memory map."""
    return isinstance(x, (str, os.PathLike)) or _is_table(x) or _is_mapped(x)


def _names(value, what):
    """A column name or a list of them as a list (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    names = list(value)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what}: give column names (text), got {value!r}")
    return names


def _source(x, y, loss, name="x", target=None, features=None, exclude=None, fill_null=None, inputs=None):
    """What ``x`` (and ``y``) are read from: a ``NativeSource`` that reads
    rows a part at a time, or ``None`` for arrays held in memory (``x``
    then goes through ``as_rows``).

    A path by its suffix: Parquet (``.parquet``, ``.pq``; the columns by
    ``target``, ``features``, ``exclude``, ``fill_null``, as the program's
    ``--target``, ``--features``, ``--exclude``, ``--fill-null``), ``.npy``
    (``[rows, columns]``, the last ``target`` columns, by default 1, the
    targets; with ``y``, every column an input, read as a memory map),
    ``.npz`` (arrays ``x`` and ``y``, read whole). A table by the Parquet
    rules. A memory map of any dtype, read where it lies (a float32
    C-contiguous one is borrowed as it is, the held path: returns None).
    With ``y`` given, a file's or table's columns are all inputs (less
    ``exclude``, or the ``features`` named) and ``y`` the targets.
    ``inputs``: the model's inputs, to predict (``y`` and the targets then
    ignored: a Parquet file's or table's first ``inputs`` columns not
    excluded nor named ``target``, as ``retroprop predict`` reads)."""
    classes = loss == "cross_entropy"
    named = dict(features=features, exclude=exclude, fill_null=fill_null)
    if isinstance(x, (str, os.PathLike)):
        path = os.fspath(x)
        suffix = os.path.splitext(path)[1].lower()
        if suffix in PARQUET_SUFFIXES:
            args = (_names(target, "target"), _names(features, "features"), _names(exclude, "exclude") or [],
                    None if fill_null is None else float(fill_null))
            if inputs is not None:
                return _retroprop.NativeSource.parquet_inputs(path, inputs, *args)
            source = _retroprop.NativeSource.parquet(path, classes, *args, y is not None)
            return source if y is None else _with_y(source, y, loss, name)
        if suffix not in (".npy", ".npz"):
            raise ValueError(
                f"{name}: {path}: retroprop reads Parquet ({', '.join(PARQUET_SUFFIXES)}), .npy and .npz files "
                "by their suffix (a CSV file: load it with numpy.loadtxt or pandas first)"
            )
        if any(v is not None for v in named.values()):
            given = ", ".join(k for k, v in named.items() if v is not None)
            raise ValueError(f"{name}: {path}: {given} name columns of a Parquet file or a table; a NumPy file's have no names")
        if suffix == ".npz":
            if y is not None or target is not None or inputs is not None:
                raise ValueError(f"{name}: {path}: an .npz archive holds its own arrays x and y: give neither y nor target")
            return _retroprop.NativeSource.npz(path, classes)
        if y is None and inputs is None:
            columns = 1 if target is None else target
            if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)):
                raise TypeError(f"{name}: {path}: an .npy file's target is how many of its last columns are targets, got {target!r}")
            return _retroprop.NativeSource.npy(path, classes, int(columns))
        x = np.load(path, mmap_mode="r")
        if x.ndim == 2 and inputs is not None:
            x = x[:, :inputs]
        return _mapped(x, y, loss, f"{name} ({path})", inputs)
    if _is_table(x):
        kind = f"{name} (a {type(x).__module__.split('.')[0]}.{type(x).__name__})"
        if inputs is not None and features is None:
            features = _first_columns(x, inputs, _names(target, "target") or [], _names(exclude, "exclude") or [])
            exclude = None
        args = (_names(target, "target"), _names(features, "features"), _names(exclude, "exclude") or [],
                None if fill_null is None else float(fill_null))
        only = y is not None or inputs is not None
        source = _retroprop.NativeSource.arrow(x, kind, classes, *args, only)
        return source if y is None or inputs is not None else _with_y(source, y, loss, name)
    if target is not None or any(v is not None for v in named.values()):
        given = ", ".join(k for k, v in dict(named, target=target).items() if v is not None)
        raise ValueError(f"{name}: {given} name columns of a file or a table, but {name} is an array")
    if _is_mapped(x):
        return _mapped(x, y, loss, f"{name} (a memory map{_map_file(x)})", inputs)
    return None


def _mapped(x, y, loss, name, inputs):
    """A memory map's source: None for a float32 C-contiguous one (borrowed
    where it is by the held path), else one reading its rows where they
    lie, with ``y`` held beside it."""
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, features], got shape {x.shape}")
    if x.dtype == np.float32 and x.flags.c_contiguous and x.flags.aligned and inputs is None:
        if y is None:
            raise TypeError(f"{name}: an array holds the inputs only: give y")
        return None
    source = _retroprop.NativeSource.array(x, name)
    if inputs is not None:
        return source
    if y is None:
        raise TypeError(f"{name}: an array holds the inputs only: give y")
    return _with_y(source, y, loss, name)


def _with_y(source, y, loss, name):
    """``source``'s inputs with the targets ``y``."""
    classes, values = _targets(y, loss, "y")
    return source.with_targets(classes, values)


def _first_columns(table, inputs, targets, exclude):
    """A table's first ``inputs`` columns neither named targets nor
    excluded: the inputs ``retroprop predict`` reads."""
    schema = getattr(table, "schema", None)
    names = list(schema.names) if hasattr(schema, "names") else list(getattr(table, "columns", []))
    candidates = [n for n in names if n not in targets and n not in exclude]
    if len(candidates) < inputs:
        raise ValueError(f"the table has {len(candidates)} columns that can be inputs, but the model takes {inputs}")
    return candidates[:inputs]


def _held(source):
    """All of ``source``'s rows in memory: ``(x, classes, values)``."""
    return source.read(0, source.rows)


class Model:
    """A trained network: layer sizes, activations, loss, parameters and
    the standardisation applied before it. Pickles as its model file's
    bytes."""

    def __init__(self, native):
        self._native = native

    @classmethod
    def from_bytes(cls, data, name="<bytes>"):
        """A model from a model file's bytes."""
        return cls(_retroprop.NativeModel.from_bytes(bytes(data), str(name)))

    def to_bytes(self):
        """The model file's bytes (safetensors, as ``retroprop train --save``)."""
        return self._native.to_bytes()

    def save(self, path):
        """Writes the model file (``retroprop predict --model`` reads it)."""
        _write(path, self.to_bytes())

    def state_dict(self):
        """``{"layers.{i}.weight": [out, in], "layers.{i}.bias": [out]}`` as
        float32 NumPy arrays: the model file's names, which
        ``torch.nn.Module.load_state_dict`` takes for a module whose
        ``layers`` is a ``ModuleList`` of ``Linear`` (convert with
        ``{k: torch.from_numpy(v) for k, v in ...}``). A residual network
        (``blocks``) has rtdl's ``ResNet`` names instead (``first_layer``,
        ``blocks.{i}.normalization`` / ``linear_first`` /
        ``linear_second``, ``head.normalization`` / ``head.linear``), with
        BatchNorm's ``running_mean``, ``running_var`` and
        ``num_batches_tracked`` (a 0-d int64 array): the README's
        "Residual networks in torch" module loads it with ``strict=True``."""
        return dict(self._native.state_dict())

    @property
    def sizes(self):
        """Layer sizes, input first."""
        return list(self._native.sizes)

    @property
    def activations(self):
        """One activation name per layer."""
        return list(self._native.activations)

    @property
    def loss(self):
        """The loss it was trained with."""
        return self._native.loss

    @property
    def standardization(self):
        """``(mean, std)`` applied to inputs first, or ``None``."""
        s = self._native.standardization
        return None if s is None else (np.asarray(s[0], np.float32), np.asarray(s[1], np.float32))

    def predict(self, x, device="cpu", probabilities=False):
        """Outputs for ``x`` ``[rows, inputs]`` after the saved
        standardisation: the network's outputs (logits for classification
        losses), or with ``probabilities`` softmax (cross_entropy) or
        sigmoid (bce_with_logits) of them, as ``retroprop predict`` prints."""
        return self._native.predict(as_rows(x), device, bool(probabilities))

    def to_onnx(self, path=None, probabilities=False, both_classes=False):
        """Writes the model as an ONNX graph (opset 17; ``retroprop export
        --onnx``) to ``path``, or returns its bytes when ``path`` is None.
        ``probabilities``: end with softmax or sigmoid as the loss implies.
        ``both_classes``: with ``probabilities``, a model of one
        bce_with_logits output (two classes) gives both classes'
        probabilities, ``[1 - p, p]``, as scikit-learn's ``predict_proba``
        (``retroprop export --both-classes``)."""
        data = self._native.onnx_bytes(bool(probabilities), bool(both_classes))
        if path is None:
            return data
        _write(path, data)
        return None

    def __reduce__(self):
        return (Model.from_bytes, (self.to_bytes(),))

    def __repr__(self):
        return f"Model(sizes={self.sizes}, activations={self.activations}, loss={self.loss!r})"


def _write(path, data):
    """Writes ``data`` to ``path`` atomically (a temporary file, renamed)."""
    tmp = f"{os.fspath(path)}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class MembersModel:
    """What the members of a run trained (``Trainer(..., members=k)``):
    the network, loss and standardisation they share, each member's
    parameters and own settings. Pickles as its model file's bytes.

    Its model file (``save``, ``to_bytes``) holds every member's tensors
    as ``members.{m}.layers.{i}.weight`` / ``.bias``, the ``state_dict``
    of a ``torch.nn.Module`` whose ``members`` is a ``ModuleList`` of the
    members' networks, with each member's settings in the metadata
    (``retroprop.member.{m}``); ``retroprop.load`` reads it back::

        >>> import numpy as np, retroprop
        >>> x = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)
        >>> y = (x.sum(axis=1) > 0).astype(np.int64)
        >>> t = retroprop.Trainer([3, 6, 2], "relu", "cross_entropy", epochs=2, device="cpu",
        ...                       members=2, seed=[0, 1])
        >>> _ = t.fit(x, y)
        >>> model = t.model()
        >>> len(model), model.settings
        (2, ['seed=0', 'seed=1'])
        >>> sorted(model.state_dict())[:2]
        ['members.0.layers.0.bias', 'members.0.layers.0.weight']
        >>> ensemble = model.predict(x)  # the mean of the members' softmax
        >>> bool(np.allclose(ensemble.sum(axis=1), 1.0))
        True
        >>> bool((model.member(1).predict(x) == model.predict(x, member=1)).all())
        True
        >>> again = retroprop.MembersModel.from_bytes(model.to_bytes())
        >>> bool((again.predict(x) == ensemble).all())
        True
    """

    def __init__(self, native):
        self._native = native

    @classmethod
    def from_bytes(cls, data, name="<bytes>"):
        """Members from a members model file's bytes."""
        return cls(_retroprop.NativeMembersModel.from_bytes(bytes(data), str(name)))

    def to_bytes(self):
        """The members model file's bytes (safetensors)."""
        return self._native.to_bytes()

    def save(self, path):
        """Writes the members model file."""
        _write(path, self.to_bytes())

    def state_dict(self):
        """``{"members.{m}.layers.{i}.weight": [out, in], "members.{m}.layers.{i}.bias":
        [out]}`` as float32 NumPy arrays: the model file's names, which
        ``torch.nn.Module.load_state_dict`` takes for a module whose
        ``members`` is a ``ModuleList`` of the members' networks (each with
        ``layers``, a ``ModuleList`` of ``Linear``)."""
        return dict(self._native.state_dict())

    def member(self, m):
        """Member ``m`` as a ``Model`` of its own."""
        return Model(self._native.member(int(m)))

    def __len__(self):
        return self._native.count

    @property
    def settings(self):
        """Each member's own settings in words (``seed=3 lr=0.01 rows=45#…``)."""
        return list(self._native.settings)

    @property
    def sizes(self):
        """Layer sizes, input first."""
        return list(self._native.sizes)

    @property
    def activations(self):
        """One activation name per layer."""
        return list(self._native.activations)

    @property
    def loss(self):
        """The loss they were trained with."""
        return self._native.loss

    @property
    def standardization(self):
        """``(mean, std)`` applied to inputs first, or ``None``."""
        s = self._native.standardization
        return None if s is None else (np.asarray(s[0], np.float32), np.asarray(s[1], np.float32))

    def predict(self, x, device="cpu", member=None, probabilities=False):
        """For ``x`` ``[rows, inputs]`` after the saved standardisation:
        with ``member`` None the ensemble's prediction, the mean of the
        members' probabilities (softmax for cross_entropy, sigmoid for
        bce_with_logits) or of their outputs (the regression losses),
        summed in member order in float64; with ``member=m`` that member's
        outputs, or with ``probabilities`` what its loss implies."""
        m = None if member is None else int(member)
        return self._native.predict(as_rows(x), device, bool(probabilities), m)

    def to_onnx(self, path=None, member=None, probabilities=False, both_classes=False):
        """Writes an ONNX graph (opset 17) to ``path``, or returns its bytes
        when ``path`` is None: with ``member`` None the ensemble, every
        member's network on the same input and the ``Mean`` of their
        probabilities (of their outputs for the regression losses; output
        ``probabilities`` or ``predictions``), what ``predict`` computes;
        with ``member=m`` that member's network as ``Model.to_onnx``
        writes it (``probabilities``, ``both_classes``). ``both_classes``:
        for one bce_with_logits output, both classes' probabilities."""
        m = None if member is None else int(member)
        data = self._native.onnx_bytes(m, bool(probabilities), bool(both_classes))
        if path is None:
            return data
        _write(path, data)
        return None

    def __reduce__(self):
        return (MembersModel.from_bytes, (self.to_bytes(),))

    def __repr__(self):
        return (f"MembersModel(members={len(self)}, sizes={self.sizes}, activations={self.activations}, "
                f"loss={self.loss!r})")


def load(path):
    """Reads a model file (``retroprop train --save``, ``Model.save``): a
    ``Model``, or for a file of a run's members (``MembersModel.save``) a
    ``MembersModel``."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.fspath(path)
    if _retroprop.NativeMembersModel.is_members(data, name):
        return MembersModel.from_bytes(data, name)
    return Model.from_bytes(data, name)


class History(dict):
    """What ``Trainer.fit`` did: ``epochs`` (one dict per epoch: epoch,
    step, train_loss, val_loss, val_accuracy, lr, seconds, layer_norms,
    by the names of the program's ``--metrics`` file; ``layer_norms`` is
    one dict a layer and sampled step, ``step``, ``layer``, ``grad_norm``,
    ``weight_norm``, with ``norms_every``, else empty), ``best_epoch``,
    ``stopped_early``, ``interrupted``."""

    @property
    def train_loss(self):
        """The training loss of each epoch."""
        return [e["train_loss"] for e in self["epochs"]]

    @property
    def val_loss(self):
        """The validation loss of each epoch (None without validation)."""
        return [e["val_loss"] for e in self["epochs"]]


class MembersHistory(list):
    """What ``Trainer.fit`` did with ``members``: one ``History`` a member
    (its epochs, ``best_epoch``, ``stopped_early``), and ``states`` (where
    each member stands: ``training``, ``stopped_early``, ``stopped`` by
    ``stop_member``, ``diverged``), ``errors`` (for a member that
    diverged, what its lone fit would have raised, else None) and
    ``interrupted`` (``stop()`` or Ctrl-C ended the run)."""

    def __init__(self, native):
        super().__init__(History(h) for h in native["members"])
        self.states = list(native["states"])
        self.errors = list(native["errors"])
        self.interrupted = bool(native["interrupted"])


def print_epoch(record, file=None):
    """One line per epoch, as scikit-learn's ``verbose`` prints."""
    line = f"Iteration {record['epoch']}, loss = {record['train_loss']:.8f}"
    if record.get("val_loss") is not None:
        line += f", validation loss = {record['val_loss']:.8f}"
    if record.get("val_accuracy") is not None:
        line += f", validation accuracy = {record['val_accuracy']:.4f}"
    print(line, file=file or sys.stdout, flush=True)


class Trainer:
    """Trains one network, as the library's ``Trainer`` with a
    ``TrainConfig``, with ``torch.optim``'s optimizers, names and defaults.

    Every setting left ``None`` takes the library's default (in brackets
    below), or, with ``resume``, the checkpoint's: a resumed run is the
    run it continues. The program (``retroprop train --resume``) and this
    class decide a resume by the same rule, in the library.

    ``sizes``: every layer size, input first (``[64, 256, 10]``).
    ``activations`` [``relu``]: one name for every hidden layer (the
    output layer is identity) or a comma list with one per layer:
    ``identity``, ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu[:SLOPE]``,
    ``gelu``, ``gelu_tanh``. ``loss`` [``mse``]: ``mse``, ``half_mse``,
    ``cross_entropy`` (targets are class indices), ``bce_with_logits``.

    ``blocks=N`` makes the network residual, the ResNet of "Revisiting
    Deep Learning Models for Tabular Data" (Gorishniy et al. 2021): an
    input linear to the width of ``sizes``' one hidden size (``[64, 32,
    10]``), N blocks ``x + Dropout(Linear(Dropout(Act(Linear(Norm(x))))))``
    of hidden width ``block_multiplier`` [2] × the width, and a head
    ``Norm → Act → Linear``; ``norm`` [``batch``]: ``batch`` (torch's
    ``BatchNorm1d``, running statistics in evaluation), ``layer``
    (``LayerNorm``) or ``none``; the activation is the hidden one,
    ``dropout`` both dropouts of every block. A 50-block network trains
    where a plain one of that depth does not::

        >>> import numpy as np, retroprop
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(256, 8)).astype(np.float32)
        >>> y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
        >>> deep = retroprop.Trainer([8, 16, 2], loss="cross_entropy", blocks=50, norm="layer",
        ...                          batch_size=32, epochs=30, device="cpu", lr=1e-3)
        >>> history = deep.fit(x, y)
        >>> bool(history["epochs"][-1]["train_loss"] < 0.5 * history["epochs"][0]["train_loss"])
        True
        >>> plain = retroprop.Trainer([8] + [16] * 101 + [2], loss="cross_entropy", batch_size=32,
        ...                           epochs=30, device="cpu", lr=1e-3)
        >>> bool(plain.fit(x, y)["epochs"][-1]["train_loss"] > 0.65)  # chance: ln 2 = 0.69
        True

    ``optimizer`` [``adam``]: ``sgd``, ``adam``, ``adamw``, ``rmsprop``,
    ``adagrad``, with its options by torch's keyword names (``lr``,
    ``betas``, ``eps``, ``weight_decay``, ``amsgrad``, ``momentum``,
    ``dampening``, ``nesterov``, ``alpha``, ``centered``, ``lr_decay``,
    ``initial_accumulator_value``); an option left None keeps torch's
    default (or the checkpoint's), one the optimizer does not have is a
    ``ValueError``.

    ``batch_size`` [32; ``"full"`` or 0: the whole data set a step],
    ``epochs`` [10], ``max_steps``, ``shuffle`` [True], ``seed`` [0],
    ``init`` [``torch``; ``xavier_uniform``, ``xavier_normal``,
    ``kaiming_uniform``, ``kaiming_normal``, ``sklearn``], ``device``
    [``auto``; ``cpu``, ``gpu``], ``lr_schedule`` [``constant``;
    ``step:STEP:GAMMA``, ``exponential:GAMMA``, ``cosine:T_MAX[:ETA_MIN]``,
    ``warmup:EPOCHS[:START]``, ``plateau[:FACTOR[:PATIENCE]]``],
    ``clip_grad_norm``, ``clip_grad_value``, ``dropout`` (after every hidden
    layer), ``early_stopping`` (patience in epochs, on the validation loss,
    keeping the best epoch) with ``min_delta`` [0], ``norms_every``,
    ``standardize`` [False] (scale inputs by the training rows' mean and
    deviation, saved with the model), ``params`` (flat float32 parameters
    to start from), ``precision`` [``f32``; ``mixed``: every product of a
    GPU step rounds its operands to f16 and sums in f32, as
    ``torch.autocast``; needs an adapter with shader-f16, refused on the
    CPU].

    ``resume``: a checkpoint file (``fit(..., checkpoint=...)``,
    ``save_checkpoint``, ``retroprop train --checkpoint``) to continue
    from; ``epochs`` and ``max_steps`` then count from the start of the
    original run. A setting the saved state cannot carry (``sizes``,
    ``activations``, ``loss``, ``optimizer`` and the options that shape
    its state: ``amsgrad``, ``centered``, a momentum to or from 0;
    ``standardize``, ``precision``) is a ``ValueError`` naming each
    difference with both values; one that only steers the rest of the run
    (``lr`` and the other options, ``lr_schedule``, clipping, early
    stopping, ``batch_size``, ``seed``, ``shuffle``, ``dropout``) is taken,
    with a ``UserWarning`` for each (``resume_changes`` lists them), and
    recorded in the files the run writes. A new order of the rows
    (``seed``, ``shuffle``) takes effect at the next epoch: the epoch in
    progress ends in the order it began.

    Inputs: a float32 C-contiguous array is trained on where it is,
    without a copy (a pandas frame too, when ``numpy.asarray`` of it is
    such an array); anything else ``numpy.asarray`` accepts (lists,
    float64, Fortran order) is converted once. While ``fit`` or
    ``evaluate`` reads an array, it and every array it is a view of are
    read-only (their ``WRITEABLE`` flag off, writing raises
    ``ValueError``), restored afterwards however the call ends (a view
    whose base another call still reads, such as the same array in a
    concurrent fit, comes back when that call ends); views of the same
    memory made before the call keep their own flag and must not be
    written meanwhile. A memory map (``numpy.memmap``,
    ``numpy.load(path, mmap_mode="r")``, read-only or not) is trained on
    where it lies too (float32 C-contiguous), or read a part at a time
    (any other dtype or layout); its arrays are read-only meanwhile, but
    a writer of the file itself is not stopped. An array whose memory
    NumPy does not own otherwise (a view of a ``bytearray``, a foreign
    buffer), which that flag cannot protect, is copied instead.
    ``standardize`` trains on a scaled copy. The targets are copied (they
    are small). A path to a Parquet, ``.npy`` or ``.npz`` file or a
    ``pyarrow.Table`` is read a part at a time (``fit``'s docstring).

    ``fit`` releases the GIL while it trains. Ctrl-C stops it at the next
    step boundary, keeps the steps taken (``model()`` returns them),
    writes the checkpoint if one was asked for, and raises
    ``KeyboardInterrupt``. ``stop()``, from a callback or another thread,
    ends a run the same way without the exception. The trainer works in a
    process forked after it was made (``multiprocessing``, joblib) on the
    CPU; a GPU trainer is refused there (``RuntimeError``): make a new
    one in the child.

    ``members=k``: k networks of this architecture trained together as the
    members of one run (the library's ``Members``), member m exactly (bit
    for bit on the CPU) the lone run with its own settings. Any per-member
    option may be a list of k values, one a member: ``lr``, ``betas`` (a
    list of pairs), ``eps``, ``weight_decay``, ``momentum``, ``dampening``,
    ``alpha``, ``lr_decay``, ``initial_accumulator_value``, ``seed``,
    ``dropout``, ``lr_schedule``; and ``rows`` and ``validation_rows``,
    each a list of k index arrays (or None: all rows), the rows of the
    training and validation data each member trains and is evaluated on
    (a fold's, a bootstrap sample's; shuffled by the member's seed as a
    data set of just those rows would be; ``validation_rows`` need
    ``fit``'s ``validation``), and ``weights``, a list of k arrays (or
    None), one weight a row of the training data, each member's own
    ``sample_weight`` in place of ``fit``'s (0/1 weights make folds
    whose batches the members share). Member m is then the lone fit
    ``fit(x[rows[m]], y[rows[m]], sample_weight=weights[m][rows[m]])``
    with its settings. The options that shape the
    optimizer's state (``amsgrad``, ``centered``, ``nesterov``, a
    momentum of 0 or not) and every other setting are the run's. Each
    member has its own life: early stopping, the plateau schedule and a
    divergence act on it alone; the run ends when every member has
    stopped or the epochs run out. On a GPU (``device="gpu"``) every
    member's step runs in the same dispatches, each member within the
    CPU-vs-GPU tolerance of its lone GPU run; a setting that is a
    member's own names the member when it is refused (``member 2:
    invalid hyperparameter lr = -1 …``). Then ``fit`` returns a
    ``MembersHistory``, its ``callback(member, record)`` gets each
    member's epochs, member by member after each epoch of the run (it may
    call ``stop_member(m)``, which ends member m after that epoch as
    ``stop()`` ends a lone fit), ``predict(x,
    member=None)`` gives the ensemble's prediction (the mean of the
    members' probabilities, or of their outputs for regression) or one
    member's outputs, ``evaluate`` a ``(loss, accuracy)`` a member,
    ``steps`` a count a member, and ``model()`` a ``MembersModel``
    (``state_dict`` as ``members.{m}.layers.{i}.weight``, ``to_onnx(member=None)``
    of the ensemble or one member). ``checkpoint`` and
    ``save_checkpoint`` write every member's state; ``Trainer(...,
    members=k, resume=path)`` continues them, the shared settings resolved
    against member 0's checkpoint and each member's own settings left out
    taken from its own checkpoint (its rows and weights must be given
    again, the same).

    Three learning rates in one run, the second member on half the rows,
    each member its lone run::

        >>> import numpy as np, retroprop
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(120, 4)).astype(np.float32)
        >>> y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
        >>> half = np.arange(0, 120, 2)
        >>> t = retroprop.Trainer([4, 8, 2], "tanh", "cross_entropy", batch_size=16, epochs=3,
        ...                       device="cpu", members=3, lr=[1e-3, 1e-2, 1e-1], rows=[None, half, None])
        >>> seen = []
        >>> history = t.fit(x, y, callback=lambda m, record: seen.append((m, record["epoch"])))
        >>> seen[:4]
        [(0, 1), (1, 1), (2, 1), (0, 2)]
        >>> history.states, [len(h["epochs"]) for h in history]
        (['training', 'training', 'training'], [3, 3, 3])
        >>> t.predict(x).shape  # the ensemble: the members' mean probabilities
        (120, 2)
        >>> alone = retroprop.Trainer([4, 8, 2], "tanh", "cross_entropy", batch_size=16, epochs=3,
        ...                           device="cpu", lr=1e-2)
        >>> _ = alone.fit(x[half], y[half])
        >>> bool((t.predict(x, member=1) == alone.predict(x)).all())
        True
        >>> retroprop.Trainer([4, 8, 2], members=2, lr=[1e-3, -1.0])
        Traceback (most recent call last):
        ...
        ValueError: invalid configuration: member 1: invalid hyperparameter lr = -1: the learning rate must be a positive number
    """

    def __init__(
        self,
        sizes,
        activations=None,
        loss=None,
        optimizer=None,
        *,
        lr=None,
        betas=None,
        eps=None,
        weight_decay=None,
        amsgrad=None,
        momentum=None,
        dampening=None,
        nesterov=None,
        alpha=None,
        centered=None,
        lr_decay=None,
        initial_accumulator_value=None,
        batch_size=None,
        epochs=None,
        max_steps=None,
        shuffle=None,
        seed=None,
        init=None,
        device=None,
        lr_schedule=None,
        clip_grad_norm=None,
        clip_grad_value=None,
        dropout=None,
        early_stopping=None,
        min_delta=None,
        norms_every=None,
        standardize=None,
        params=None,
        resume=None,
        precision=None,
        members=None,
        rows=None,
        validation_rows=None,
        weights=None,
        blocks=None,
        norm=None,
        block_multiplier=None,
    ):
        given = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            alpha=alpha,
            centered=centered,
            lr_decay=lr_decay,
            initial_accumulator_value=initial_accumulator_value,
        )
        if isinstance(activations, (list, tuple)):
            activations = ",".join(activations)

        def text(value):
            return None if value is None else str(value)

        def number(kind, value):
            return None if value is None else kind(value)

        self._sizes = [int(s) for s in sizes]
        self._members = None if members is None else int(members)
        if self._members is not None and self._members < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        own = _per_member(
            self._members,
            dict(given, seed=seed, dropout=dropout, lr_schedule=lr_schedule, rows=rows,
                 validation_rows=validation_rows, weights=weights),
        )
        given = {k: v for k, v in given.items() if k not in own}
        seed, dropout, lr_schedule = (None if k in own else v for k, v in
                                      (("seed", seed), ("dropout", dropout), ("lr_schedule", lr_schedule)))
        options = [(k, _option_text(v)) for k, v in given.items() if v is not None]
        run = dict(
            sizes=[int(s) for s in sizes],
            activations=text(activations),
            loss=text(loss),
            optimizer=text(optimizer),
            optimizer_options=options,
            batch_size=_batch_rows(batch_size),
            epochs=number(int, epochs),
            max_steps=number(int, max_steps),
            shuffle=number(bool, shuffle),
            seed=number(int, seed),
            init=text(init),
            device=text(device),
            lr_schedule=text(lr_schedule),
            clip_grad_norm=number(float, clip_grad_norm),
            clip_grad_value=number(float, clip_grad_value),
            dropout=number(float, dropout),
            early_stopping=number(int, early_stopping),
            min_delta=number(float, min_delta),
            norms_every=number(int, norms_every),
            standardize=number(bool, standardize),
            precision=text(precision),
            blocks=number(int, blocks),
            norm=text(norm),
            block_multiplier=number(float, block_multiplier),
        )
        resume = None if resume is None else os.fspath(resume)
        if self._members is None:
            self._native = _retroprop.NativeTrainer(
                **run,
                standardization=None,
                params=None if params is None else np.ascontiguousarray(params, dtype=np.float32).ravel(),
                resume=resume,
            )
        else:
            if params is not None:
                raise ValueError("params: members draw their own parameters (or resume from a checkpoint)")
            self._native = _retroprop.NativeMembers(run, _member_settings(self._members, own), resume=resume)
        for setting, before, after in self._native.resume_changes:
            warnings.warn(f"resumed with {setting} changed: {before} -> {after}", UserWarning, stacklevel=2)

    @property
    def resume_changes(self):
        """The settings a resume changed from the checkpoint's, each only
        steering the rest of the run: ``(setting, from, to)`` as text."""
        return list(self._native.resume_changes)

    @property
    def standardize(self):
        """Whether ``fit`` scales the inputs (a resumed run as its start did)."""
        return self._native.standardize

    @property
    def device(self):
        """The device in words (which one ``auto`` chose)."""
        return self._native.device_name

    @property
    def loss(self):
        """The loss by name."""
        return self._native.loss

    @property
    def steps(self):
        """Optimizer steps taken (with ``members``, a count a member)."""
        return self._native.steps()

    @property
    def members(self):
        """How many members train together (None: one network)."""
        return self._members

    @property
    def states(self):
        """With ``members``, where each member stands: ``training``,
        ``stopped_early``, ``stopped``, ``diverged``."""
        self._need_members("states")
        return self._native.states()

    def fit(self, x, y=None, validation=None, callback=None, verbose=False, checkpoint=None, checkpoint_every=1,
            sample_weight=None, *, target=None, features=None, exclude=None, fill_null=None):
        """Trains on ``x`` ``[rows, features]`` and ``y`` (class indices
        for cross_entropy, else values ``[rows]`` or ``[rows, outputs]``)
        for the configured epochs; each call continues where the last
        ended. ``sample_weight`` (``[rows]``, each ≥ 0): each row's weight
        in the loss, which is then ``Σ wᵢ lᵢ / Σ wᵢ`` over a batch (as
        torch's ``reduction="none"`` followed by ``(w * l).sum() /
        w.sum()``, each row's ``lᵢ`` the mean over its outputs); a lone
        network on the CPU backend only, for now (members on either).
        ``validation``: ``(x_val, y_val)`` or
        ``(x_val, y_val, w_val)``, evaluated after each epoch (its loss
        weighted by ``w_val``). ``callback(record)`` receives each epoch's metrics (a dict,
        as in the history) once the epoch's bookkeeping is done, and may
        call the trainer meanwhile: ``steps``, ``model()``,
        ``save_checkpoint(...)``, ``predict``, ``evaluate`` see the run as
        it stands after that epoch (a checkpoint saved there resumes to the
        same run); ``stop()`` ends the run before the next step; ``fit``
        is refused there (``RuntimeError``), as it would wait for itself;
        ``verbose`` prints them as scikit-learn does. ``checkpoint``: a
        file written every ``checkpoint_every`` epochs and where the run
        stops, which ``Trainer(..., resume=path)`` continues from. Returns
        a ``History``.

        **Data larger than memory.** ``x`` may also be read a part at a
        time, never held whole, while training goes on (the library's
        ``fit_streamed``, the program's ``train --stream``): the run is
        the one the same rows held as a float32 array give, bit for bit.

        - A path (``str`` or ``os.PathLike``) by its suffix. Parquet
          (``.parquet``, ``.pq``): the targets are the column named
          ``target`` (a name or a list of names), by default the last
          column; the features the columns named ``features``, by default
          every other column less those in ``exclude``; a null in a
          feature reads as ``fill_null`` if given, else it is a
          ``ValueError`` naming the column, row group and row, as is a
          column that does not hold numbers (exclude it). ``.npy``
          (``[rows, columns]``, any numeric dtype): the last ``target``
          columns (an int, by default 1) are the targets. ``.npz``: its
          arrays ``x`` and ``y``, read whole (a zip's entries are).
        - A ``pyarrow.Table`` (or ``RecordBatch``, ``RecordBatchReader``,
          a polars ``DataFrame``: anything with ``__arrow_c_stream__`` but
          a pandas frame) by the Parquet rules: its columns are lent
          through Arrow's C stream interface, not copied, and converted
          to float32 a part of the rows at a time.
        - A NumPy memory map (``numpy.memmap``, ``numpy.load(path,
          mmap_mode="r")``), with ``y``: a float32 C-contiguous one is
          trained on where it lies (its pages loaded as they are read,
          which the system may drop again), any other dtype or layout read
          a part at a time and converted as ``numpy.asarray(x,
          numpy.float32)`` would.

        With ``y`` given, a file's or a table's columns are all inputs
        (less ``exclude``, or the ``features`` named) and ``y`` the
        targets. ``validation`` may then be a path or a table alone (by
        the same column rules) or a pair of either or arrays. Each epoch is
        read a window of rows at a time (2^20 rows, in the library's
        windowed order, which the held arrays take too), the next while
        the device trains on this one: the process holds about two
        windows of rows. ``standardize`` reads the rows twice more first.
        During such a fit the callback gets each record, but the trainer
        answers no call until ``fit`` returns (a ``ValueError``; ``stop()``
        works). Members and ``sample_weight`` train on rows held in
        memory: the rows are read whole first.

        Training from a Parquet file, its target by name, and predicting
        from it::

            >>> import numpy as np, pyarrow as pa, pyarrow.parquet as pq, retroprop, tempfile, os
            >>> rng = np.random.default_rng(0)
            >>> x = rng.normal(size=(500, 3)).astype(np.float32)
            >>> table = pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": (x[:, 0] > 0).astype(np.int64)})
            >>> path = os.path.join(tempfile.mkdtemp(), "train.parquet")
            >>> pq.write_table(table, path, row_group_size=128)
            >>> t = retroprop.Trainer([3, 8, 2], "tanh", "cross_entropy", batch_size=32, epochs=2, device="cpu")
            >>> _ = t.fit(path, target="label")
            >>> held = retroprop.Trainer([3, 8, 2], "tanh", "cross_entropy", batch_size=32, epochs=2, device="cpu")
            >>> _ = held.fit(x, table["label"].to_numpy())
            >>> bool((t.model().state_dict()["layers.0.weight"] == held.model().state_dict()["layers.0.weight"]).all())
            True
            >>> t.predict(path, target="label").shape
            (500, 2)
            >>> t.fit(path, target="labels")
            Traceback (most recent call last):
            ...
            ValueError: .../train.parquet: no column `labels` (the file's columns: a, b, c, label)
        """
        columns = dict(target=target, features=features, exclude=exclude, fill_null=fill_null)
        train = _source(x, y, self.loss, "x", **columns)
        if train is not None and (self._members is not None or sample_weight is not None):
            # Members and weighted rows are trained held in memory.
            rows, classes, values = _held(train)
            train = None
        elif train is None:
            if y is None:
                raise TypeError(
                    "fit: y is needed with arrays (y=None only with a path or a table, "
                    "whose target column target= names)"
                )
            rows = as_rows(x)
            classes, values = _targets(y, self.loss)
        validation = self._validation(validation, columns, streamed=train is not None)
        checkpoint = None if checkpoint is None else os.fspath(checkpoint)

        if train is not None:

            def on_record(record):
                if verbose:
                    print_epoch(record)
                if callback is not None:
                    callback(record)

            return History(self._native.fit_stream(
                train, validation, self.standardize, on_record, checkpoint, int(checkpoint_every)
            ))
        xv, cv, vv, wv = validation if validation is not None else (None,) * 4

        if self._members is not None:

            def on_epochs(records):
                for m, record in records:
                    if verbose:
                        print(f"member {m}: ", end="")
                        print_epoch(record)
                    if callback is not None:
                        callback(m, record)

            return MembersHistory(self._native.fit(
                rows,
                classes,
                values,
                xv,
                cv,
                vv,
                self.standardize,
                on_epochs,
                checkpoint,
                int(checkpoint_every),
                sample_weight=_weights(sample_weight, len(rows), "sample_weight"),
                sample_weight_val=wv,
            ))

        def on_epoch(record):
            if verbose:
                print_epoch(record)
            if callback is not None:
                callback(record)

        history = self._native.fit(
            rows,
            classes,
            values,
            xv,
            cv,
            vv,
            self.standardize,
            on_epoch,
            checkpoint,
            int(checkpoint_every),
            sample_weight=_weights(sample_weight, len(rows), "sample_weight"),
            sample_weight_val=wv,
        )
        return History(history)

    def _validation(self, validation, columns, streamed):
        """``fit``'s validation data: a ``NativeSource`` for a streamed
        fit, else ``(x, classes, values, weights)`` held."""
        if validation is None:
            return None
        if _is_source(validation) and not _is_mapped(validation):
            x_val, y_val, w_val = validation, None, []
        else:
            if len(validation) not in (2, 3):
                raise ValueError("validation must be (x_val, y_val), (x_val, y_val, sample_weight_val), a path or a table")
            x_val, y_val, *w_val = validation
        source = None
        if _is_source(x_val):
            source = _source(x_val, y_val, self.loss, "validation x", **columns)
        if streamed:
            if w_val:
                raise ValueError("validation sample weights: a fit from a file or a table takes no weights")
            if source is None:
                cv, vv = _targets(y_val, self.loss, "validation y")
                source = _retroprop.NativeSource.held(as_rows(x_val, "validation x"), cv, vv)
            return source
        if source is not None:
            xv, cv, vv = _held(source)
        else:
            xv = as_rows(x_val, "validation x")
            cv, vv = _targets(y_val, self.loss, "validation y")
        wv = _weights(w_val[0], len(xv), "validation sample_weight") if w_val else None
        return xv, cv, vv, wv

    def stop(self):
        """Ends a running ``fit`` at the next step boundary, keeping its
        steps (with ``members``, every member's)."""
        self._native.stop()

    def stop_member(self, m):
        """With ``members``: ends member ``m`` where it stands (from the
        callback, after the epoch just reported), as ``stop()`` from a lone
        fit's callback ends it: it takes no more steps, in this fit or a
        later one, and keeps its last parameters; the others go on."""
        self._need_members("stop_member")
        self._native.stop_member(int(m))

    def predict(self, x, member=None, *, target=None, features=None, exclude=None, fill_null=None):
        """The network's outputs for ``x`` (after the standardisation),
        on the trainer's device. With ``members``: the ensemble's
        prediction (the mean of the members' probabilities, or of their
        outputs for the regression losses), or with ``member=m`` that
        member's outputs. ``x`` may be a path, a table or a memory map
        (as ``fit`` takes), read a part at a time: a Parquet file's or a
        table's first columns neither named ``target`` nor in ``exclude``
        (as many as the network's inputs, as ``retroprop predict`` reads),
        or the ``features`` named; an ``.npy`` file's first columns."""
        inputs = self._sizes[0]
        source = None
        if _is_source(x) or any(v is not None for v in (target, features, exclude, fill_null)):
            source = _source(x, None, self.loss, "x", target=target, features=features, exclude=exclude,
                             fill_null=fill_null, inputs=inputs)
        if self._members is None:
            if member is not None:
                raise ValueError("member: this trainer trains one network (give members=k)")
            if source is not None:
                return self._native.predict_stream(source)
            return self._native.predict(as_rows(x))
        rows = _held(source)[0] if source is not None else as_rows(x)
        return self._native.predict(rows, None if member is None else int(member))

    def evaluate(self, x, y=None, *, target=None, features=None, exclude=None, fill_null=None):
        """``(loss, accuracy)`` on a data set (accuracy None for
        regression); with ``members``, a list of them, one a member.
        ``x`` (and ``y``) as ``fit`` takes them: a path, a table or a
        memory map is read a part at a time."""
        columns = dict(target=target, features=features, exclude=exclude, fill_null=fill_null)
        source = _source(x, y, self.loss, "x", **columns)
        if source is not None:
            if self._members is None:
                return self._native.evaluate_stream(source)
            rows, classes, values = _held(source)
            return self._native.evaluate(rows, classes, values)
        if y is None:
            raise TypeError("evaluate: y is needed with arrays (y=None only with a path or a table)")
        classes, values = _targets(y, self.loss)
        return self._native.evaluate(as_rows(x), classes, values)

    def model(self):
        """The trained ``Model`` as it stands (with ``members``, a
        ``MembersModel``)."""
        if self._members is not None:
            return MembersModel(self._native.model())
        return Model(self._native.model())

    def save_checkpoint(self, path):
        """Writes a checkpoint that ``Trainer(..., resume=path)`` continues
        from (with ``members``, every member's)."""
        self._native.save_checkpoint(os.fspath(path))

    def _need_members(self, what):
        if self._members is None:
            raise ValueError(f"{what}: this trainer trains one network (give members=k)")
