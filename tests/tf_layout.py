"""TensorFlow-style ONNX graphs for the tests: the layouts that tf2onnx, tflite2onnx and onnx-tf write.

``to_tf_layout(model, style)`` rewrites an NCHW ONNX model (a torch export) into one with an NHWC input
and the same function:

* ``"boundary"`` (tflite2onnx): the input is transposed to NCHW once; before each flatten the tensor is
  transposed back to NHWC (TFLite flattens NHWC), and the next Gemm/MatMul's weights are permuted to
  match, as a TF model's weights are.
* ``"per_op"`` (onnx-tf, tf2onnx without its transpose optimiser): tensors live in NHWC; every
  convolution, pooling and batch normalisation is wrapped in Transpose(0, 3, 1, 2) ... Transpose(0, 2, 3, 1);
  elementwise ops, Concat, Pad, Slice and ReduceMean act on NHWC tensors with their constants and axes
  permuted; a flatten is preceded by Transpose(0, 3, 1, 2), a cancelling pair with the one before it.

``tflite_classifier`` builds, with onnx.helper, the layout tflite2onnx writes for a small CNN:
NHWC input (batch fixed at 1) -> Transpose -> Conv/Add/Relu -> AveragePool -> Transpose(0, 2, 3, 1) ->
Reshape(1, -1) -> Gemm -> Softmax.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

TO_NCHW, TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)
_SPATIAL_OPS = {"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization"}
_ELEMENTWISE = {"Relu", "Clip", "Add", "Sum", "Mul", "Sub", "Div", "Identity", "Dropout"}
_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}        # NCHW axis -> the same axis in an NHWC tensor


def _fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant nodes, and nodes computed from constants only (the legacy exporter's F.pad arithmetic), as
    initializers, so that the rewrite can read and permute them."""
    import onnx.reference
    model = onnx.ModelProto.FromString(model.SerializeToString())
    consts = {i.name for i in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if all(not i or i in consts for i in node.input):
            feeds = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in node.input}
            one = helper.make_model(helper.make_graph(
                [node], "fold", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                                 for k, v in feeds.items()],
                [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output]),
                opset_imports=list(model.opset_import))
            for name, value in zip(node.output, onnx.reference.ReferenceEvaluator(one).run(None, feeds)):
                model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
                consts.add(name)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, style: str):
        self.model = _fold_constants(model)
        inferred = onnx.shape_inference.infer_shapes(self.model)
        self.rank = {v.name: len(v.type.tensor_type.shape.dim)
                     for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
        self.shape = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                      for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
        self.consts = {i.name: numpy_helper.to_array(i) for i in self.model.graph.initializer}
        self.style = style
        self.nodes: list = []
        self.nhwc: set = set()          # values stored as NHWC
        self.flat_nhwc: dict = {}       # flattened value -> NCHW index of each NHWC feature (boundary style)
        self.count = 0

    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}__tf{self.count}"

    def const(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        self.model.graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
        self.consts[name] = np.asarray(array)
        return name

    def transpose(self, value: str, perm: tuple, out: str = None) -> str:
        out = out or self.fresh(value)
        self.nodes.append(helper.make_node("Transpose", [value], [out], perm=list(perm)))
        return out

    def nchw(self, value: str) -> str:
        return self.transpose(value, TO_NCHW) if value in self.nhwc else value

    def rewrite(self) -> onnx.ModelProto:
        g = self.model.graph
        (inp,) = [i for i in g.input if i.name not in self.consts]
        dims = inp.type.tensor_type.shape.dim
        nhwc_dims = [dims[p] for p in TO_NHWC]
        new_input = helper.make_tensor_value_info(inp.name + "_nhwc", inp.type.tensor_type.elem_type, None)
        new_input.type.tensor_type.shape.dim.extend(nhwc_dims)
        if self.style == "boundary":
            self.transpose(new_input.name, TO_NCHW, out=inp.name)
        else:
            self.nodes.append(helper.make_node("Identity", [new_input.name], [inp.name]))
            self.nhwc.add(inp.name)
        for node in g.node:
            self.node(node)
        outputs = [o.name for o in g.output]
        for o in outputs:
            assert o not in self.nhwc and o not in self.flat_nhwc, "a 4-D output is not rewritten"
        del g.node[:]
        g.node.extend(self.nodes)
        del g.input[:]
        g.input.append(new_input)
        del g.value_info[:]
        used = {i for n in self.nodes for i in n.input}
        kept = [i for i in g.initializer if i.name in used]
        del g.initializer[:]
        g.initializer.extend(kept)
        onnx.checker.check_model(self.model)
        return self.model

    def node(self, node: onnx.NodeProto) -> None:
        op, ins = node.op_type, list(node.input)
        data = [i for i in ins if i and i not in self.consts]
        if op in _SPATIAL_OPS and self.style == "per_op":
            inner = self.fresh(node.output[0])
            wrapped = helper.make_node(op, [self.nchw(ins[0])] + ins[1:], [inner] + list(node.output[1:]),
                                       name=node.name)
            wrapped.attribute.extend(node.attribute)
            self.nodes.append(wrapped)
            self.transpose(inner, TO_NHWC, out=node.output[0])
            self.nhwc.add(node.output[0])
            return
        if op in ("Flatten", "Reshape", "Squeeze") and data and self.rank.get(data[0]) == 4:
            self.flatten(node)
            return
        if op in ("Gemm", "MatMul") and ins[0] in self.flat_nhwc:
            self.permuted_dense(node)
            return
        if not any(i in self.nhwc for i in data):
            self.nodes.append(node)
            return
        new = onnx.NodeProto.FromString(node.SerializeToString())
        if op in _ELEMENTWISE:
            for k, i in enumerate(ins):
                if i in self.consts and self.consts[i].size > 1:           # broadcast over NCHW axes
                    c = self.consts[i]
                    c = c.reshape((1,) * (4 - c.ndim) + c.shape).transpose(TO_NHWC)
                    new.input[k] = self.const(c, i)
        elif op == "Concat":
            for a in new.attribute:
                if a.name == "axis":
                    a.i = _NHWC_AXIS[a.i % 4]
        elif op == "Pad":
            pads = self.consts[ins[1]]
            begins, ends = pads[:4], pads[4:]
            new.input[1] = self.const(np.concatenate([begins[list(TO_NHWC)], ends[list(TO_NHWC)]]), ins[1])
        elif op in ("Slice", "ReduceMean"):
            k = 3 if op == "Slice" else 1
            axes = self.consts[ins[k]] if len(ins) > k and ins[k] else None
            assert axes is not None, f"{op} without explicit axes is not rewritten"
            new.input[k] = self.const(np.array([_NHWC_AXIS[int(a) % 4] for a in axes], np.int64), ins[k])
        else:
            raise AssertionError(f"per-op NHWC rewrite of {op} is not written")
        self.nodes.append(new)
        self.nhwc.add(node.output[0])

    def flatten(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        if self.style == "per_op":
            self.nodes.append(helper.make_node(node.op_type, [self.nchw(x)] + list(node.input[1:]),
                                               list(node.output), name=node.name))
            for a in node.attribute:
                self.nodes[-1].attribute.append(a)
            return
        c, h, w = self.shape[x][1:]
        self.nodes.append(helper.make_node(node.op_type, [self.transpose(x, TO_NHWC)] + list(node.input[1:]),
                                           list(node.output), name=node.name))
        for a in node.attribute:
            self.nodes[-1].attribute.append(a)
        if h * w > 1:            # a 1 x 1 map flattens to the same order in either layout
            self.flat_nhwc[node.output[0]] = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()

    def permuted_dense(self, node: onnx.NodeProto) -> None:
        """The dense layer after an NHWC flatten reads features in NHWC order: its weights follow them."""
        order = self.flat_nhwc[node.input[0]]
        w = self.consts[node.input[1]]
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        w = w[:, order] if node.op_type == "Gemm" and trans_b else w[order, :]
        new = onnx.NodeProto.FromString(node.SerializeToString())
        new.input[1] = self.const(w, node.input[1])
        self.nodes.append(new)


def to_tf_layout(model: onnx.ModelProto, style: str) -> onnx.ModelProto:
    """``model`` (NCHW input) rewritten with an NHWC input in ``style`` (see the module docstring)."""
    return _Rewriter(model, style).rewrite()


def tflite_classifier(convs: list, dense: tuple, hw: tuple, pool: int = 2) -> onnx.ModelProto:
    """The tflite2onnx layout of conv(+bias Add)+ReLU layers, an average pool and a dense layer with Softmax.

    ``convs``: [(weight O x I x 3 x 3, bias O)], padding 1; ``dense``: (weight classes x features in NCHW
    flatten order, bias), permuted here into the NHWC order a TFLite model's weights have.
    """
    h, w = hw
    c_in = convs[0][0].shape[1]
    inits, nodes = [], [helper.make_node("Transpose", ["input"], ["x_nchw"], perm=list(TO_NCHW))]
    x = "x_nchw"
    for i, (weight, bias) in enumerate(convs):
        inits += [numpy_helper.from_array(weight.astype(np.float32), f"conv{i}_w"),
                  numpy_helper.from_array(bias.reshape(1, -1, 1, 1).astype(np.float32), f"conv{i}_b")]
        nodes += [helper.make_node("Conv", [x, f"conv{i}_w"], [f"conv{i}"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
                  helper.make_node("Add", [f"conv{i}", f"conv{i}_b"], [f"add{i}"]),
                  helper.make_node("Relu", [f"add{i}"], [f"relu{i}"])]
        x = f"relu{i}"
    c = convs[-1][0].shape[0]
    nodes += [helper.make_node("AveragePool", [x], ["pool"], kernel_shape=[pool, pool], strides=[pool, pool]),
              helper.make_node("Transpose", ["pool"], ["pool_nhwc"], perm=list(TO_NHWC)),
              helper.make_node("Reshape", ["pool_nhwc", "flat_shape"], ["flat"]),
              helper.make_node("Gemm", ["flat", "dense_w", "dense_b"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)]
    ph, pw = h // pool, w // pool
    order = np.arange(c * ph * pw).reshape(c, ph, pw).transpose(1, 2, 0).ravel()
    inits += [numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"),
              numpy_helper.from_array(dense[0][:, order].astype(np.float32), "dense_w"),
              numpy_helper.from_array(dense[1].astype(np.float32), "dense_b")]
    graph = helper.make_graph(
        nodes, "tflite2onnx-style",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, h, w, c_in])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [1, dense[0].shape[0]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
