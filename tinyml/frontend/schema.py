"""Facts from the TFLite flatbuffer schema (schema.fbs, schema version 3).

Field ids are the position of a field in its table declaration (deprecated
fields keep their slot). Only what tinyml reads is listed; a table or enum
value missing here is either ignored (unknown options) or reported by name.
"""
from __future__ import annotations

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3


class Model:
    VERSION, OPERATOR_CODES, SUBGRAPHS, DESCRIPTION, BUFFERS, METADATA_BUFFER, METADATA, SIGNATURE_DEFS = range(8)


class SubGraph:
    TENSORS, INPUTS, OUTPUTS, OPERATORS, NAME = range(5)


class Tensor:
    SHAPE, TYPE, BUFFER, NAME, QUANTIZATION, IS_VARIABLE, SPARSITY, SHAPE_SIGNATURE = range(8)


class Quantization:
    MIN, MAX, SCALE, ZERO_POINT, DETAILS_TYPE, DETAILS, QUANTIZED_DIMENSION = range(7)


class Operator:
    OPCODE_INDEX, INPUTS, OUTPUTS, BUILTIN_OPTIONS_TYPE, BUILTIN_OPTIONS, CUSTOM_OPTIONS = range(6)


class OperatorCode:
    # builtin_code (id 3, int32) replaced deprecated_builtin_code (id 0, int8)
    # when the enum outgrew 127; readers take the larger of the two.
    DEPRECATED_BUILTIN_CODE, CUSTOM_CODE, VERSION, BUILTIN_CODE = range(4)


class Buffer:
    # offset/size (ids 1, 2) locate data outside the flatbuffer (>2 GB models);
    # an offset of 0 or 1 means "not used".
    DATA, OFFSET, SIZE = range(3)


class Metadata:
    NAME, BUFFER = range(2)


class SignatureDef:
    INPUTS, OUTPUTS, SIGNATURE_KEY, DEPRECATED_FUNCTION_NAME, SUBGRAPH_INDEX = range(5)


class TensorMap:
    NAME, TENSOR_INDEX = range(2)


# TensorType enum -> IR dtype name (None: a type tinyml does not handle).
TENSOR_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("FLOAT32", "float32"), 1: ("FLOAT16", None), 2: ("INT32", "int32"), 3: ("UINT8", "uint8"),
    4: ("INT64", "int64"), 5: ("STRING", None), 6: ("BOOL", "bool"), 7: ("INT16", "int16"),
    8: ("COMPLEX64", None), 9: ("INT8", "int8"), 10: ("FLOAT64", None), 11: ("COMPLEX128", None),
    12: ("UINT64", None), 13: ("RESOURCE", None), 14: ("VARIANT", None), 15: ("UINT32", None),
    16: ("UINT16", None), 17: ("INT4", "int4"), 18: ("BFLOAT16", None), 19: ("INT2", None),
    20: ("UINT4", None), 21: ("FLOAT8_E4M3FN", None), 22: ("FLOAT8_E5M2", None),
}

ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")
PADDINGS = ("SAME", "VALID")
MIRROR_PAD_MODES = ("REFLECT", "SYMMETRIC")
WEIGHTS_FORMATS = ("DEFAULT", "SHUFFLED4x16INT8")

# BuiltinOperator enum, in value order (0..209).
BUILTIN_OPS: tuple[str, ...] = (
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION",
    "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RNN",
    "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM",
    "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE",
    "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM", "ARG_MAX", "MINIMUM", "LESS", "NEG",
    "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV",
    "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT",
    "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR",
    "ONE_HOT", "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY",
    "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU",
    "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N",
    "GATHER_ND", "COS", "WHERE", "RANK", "ELU", "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE",
    "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF", "WHILE", "NON_MAX_SUPPRESSION_V4",
    "NON_MAX_SUPPRESSION_V5", "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D", "CONV_3D",
    "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE",
    "REDUCE_ALL", "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE",
    "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM", "MULTINOMIAL", "GELU",
    "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1", "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX",
    "UNSORTED_SEGMENT_SUM", "ATAN2", "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST", "BITWISE_XOR",
    "RIGHT_SHIFT", "STABLEHLO_LOGISTIC", "STABLEHLO_ADD", "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY",
    "STABLEHLO_MAXIMUM", "STABLEHLO_RESHAPE", "STABLEHLO_CLAMP", "STABLEHLO_CONCATENATE",
    "STABLEHLO_BROADCAST_IN_DIM", "STABLEHLO_CONVOLUTION", "STABLEHLO_SLICE", "STABLEHLO_CUSTOM_CALL",
    "STABLEHLO_REDUCE", "STABLEHLO_ABS", "STABLEHLO_AND", "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL",
    "STABLEHLO_FLOOR", "STABLEHLO_LOG", "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR",
    "STABLEHLO_POWER", "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT", "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT", "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE", "STABLEHLO_PAD",
    "STABLEHLO_IOTA", "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW", "STABLEHLO_SORT",
    "STABLEHLO_WHILE", "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE", "STABLEHLO_SHIFT_LEFT",
    "STABLEHLO_CBRT", "STABLEHLO_CASE",
)
CUSTOM = BUILTIN_OPS.index("CUSTOM")

# Field kinds of options tables: scalars by struct code, enums by name table,
# a TensorType, or a vector of int32.
ACT, PAD, TYPE, INTS = "act", "pad", "type", "ints"
MIRROR, WFORMAT = "mirror", "wformat"
ENUMS: dict[str, tuple[str, ...]] = {ACT: ACTIVATIONS, PAD: PADDINGS, MIRROR: MIRROR_PAD_MODES,
                                     WFORMAT: WEIGHTS_FORMATS}

# Options table: (BuiltinOptions union value, [(attr name, field id, kind, default)]).
# Defaults are the schema's: absent fields read as these values.
_CONV = [("padding", 0, PAD, 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
         ("fused_activation_function", 3, ACT, 0), ("dilation_w_factor", 4, "i", 1),
         ("dilation_h_factor", 5, "i", 1)]
_ACT_ONLY = [("fused_activation_function", 0, ACT, 0)]
OPTION_TABLES: dict[str, tuple[int, list[tuple[str, int, str, object]]]] = {
    "Conv2DOptions": (1, _CONV),
    "DepthwiseConv2DOptions": (2, [("padding", 0, PAD, 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
                                   ("depth_multiplier", 3, "i", 0), ("fused_activation_function", 4, ACT, 0),
                                   ("dilation_w_factor", 5, "i", 1), ("dilation_h_factor", 6, "i", 1)]),
    "SVDFOptions": (6, [("rank", 0, "i", 0), ("fused_activation_function", 1, ACT, 0),
                        ("asymmetric_quantize_inputs", 2, "?", False)]),
    "Pool2DOptions": (5, [("padding", 0, PAD, 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
                          ("filter_width", 3, "i", 0), ("filter_height", 4, "i", 0),
                          ("fused_activation_function", 5, ACT, 0)]),
    "FullyConnectedOptions": (8, [("fused_activation_function", 0, ACT, 0), ("weights_format", 1, WFORMAT, 0),
                                  ("keep_num_dims", 2, "?", False), ("asymmetric_quantize_inputs", 3, "?", False)]),
    "SoftmaxOptions": (9, [("beta", 0, "f", 0.0)]),
    "ConcatenationOptions": (10, [("axis", 0, "i", 0), ("fused_activation_function", 1, ACT, 0)]),
    "AddOptions": (11, [("fused_activation_function", 0, ACT, 0), ("pot_scale_int16", 1, "?", True)]),
    "L2NormOptions": (12, _ACT_ONLY),
    "ResizeBilinearOptions": (15, [("align_corners", 2, "?", False), ("half_pixel_centers", 3, "?", False)]),
    "ReshapeOptions": (17, [("new_shape", 0, INTS, None)]),
    "SpaceToDepthOptions": (19, [("block_size", 0, "i", 0)]),
    "MulOptions": (21, _ACT_ONLY),
    "GatherOptions": (23, [("axis", 0, "i", 0), ("batch_dims", 1, "i", 0)]),
    "ReducerOptions": (27, [("keep_dims", 0, "?", False)]),
    "SubOptions": (28, [("fused_activation_function", 0, ACT, 0), ("pot_scale_int16", 1, "?", True)]),
    "DivOptions": (29, _ACT_ONLY),
    "SqueezeOptions": (30, [("squeeze_dims", 0, INTS, None)]),
    "StridedSliceOptions": (32, [("begin_mask", 0, "i", 0), ("end_mask", 1, "i", 0), ("ellipsis_mask", 2, "i", 0),
                                 ("new_axis_mask", 3, "i", 0), ("shrink_axis_mask", 4, "i", 0),
                                 ("offset", 5, "?", False)]),
    "SplitOptions": (35, [("num_splits", 0, "i", 0)]),
    "CastOptions": (37, [("in_data_type", 0, TYPE, 0), ("out_data_type", 1, TYPE, 0)]),
    "ArgMaxOptions": (40, [("output_type", 0, TYPE, 0)]),
    "TransposeConvOptions": (49, [("padding", 0, PAD, 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
                                  ("fused_activation_function", 3, ACT, 0)]),
    "ShapeOptions": (55, [("out_type", 0, TYPE, 0)]),
    "ArgMinOptions": (57, [("output_type", 0, TYPE, 0)]),
    "PackOptions": (59, [("values_count", 0, "i", 0), ("axis", 1, "i", 0)]),
    "UnpackOptions": (64, [("num", 0, "i", 0), ("axis", 1, "i", 0)]),
    "ResizeNearestNeighborOptions": (74, [("align_corners", 0, "?", False), ("half_pixel_centers", 1, "?", False)]),
    "LeakyReluOptions": (75, [("alpha", 0, "f", 0.0)]),
    "MirrorPadOptions": (77, [("mode", 0, MIRROR, 0)]),
    "SplitVOptions": (79, [("num_splits", 0, "i", 0)]),
    "DepthToSpaceOptions": (94, [("block_size", 0, "i", 0)]),
    "BatchMatMulOptions": (101, [("adj_x", 0, "?", False), ("adj_y", 1, "?", False),
                                 ("asymmetric_quantize_inputs", 2, "?", False)]),
    "GeluOptions": (116, [("approximate", 0, "?", False)]),
    "UnidirectionalSequenceLSTMOptions": (71, [("fused_activation_function", 0, ACT, 0), ("cell_clip", 1, "f", 0.0),
                                               ("proj_clip", 2, "f", 0.0), ("time_major", 3, "?", False),
                                               ("asymmetric_quantize_inputs", 4, "?", False),
                                               ("diagonal_recurrent_tensors", 5, "?", False)]),
    # read by frontend/variables.py (strings and a subgraph index, not IR attrs)
    "CallOnceOptions": (103, []),
    "VarHandleOptions": (111, []),
}

# Which options table each builtin op carries. Ops not listed have no options
# tinyml reads (their attrs are {}).
OP_OPTIONS: dict[str, str] = {
    "CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions", "L2_POOL_2D": "Pool2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions", "SOFTMAX": "SoftmaxOptions",
    "CONCATENATION": "ConcatenationOptions", "ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions",
    "DIV": "DivOptions", "L2_NORMALIZATION": "L2NormOptions", "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions", "RESHAPE": "ReshapeOptions",
    "SPACE_TO_DEPTH": "SpaceToDepthOptions", "DEPTH_TO_SPACE": "DepthToSpaceOptions",
    "GATHER": "GatherOptions", "MEAN": "ReducerOptions", "SUM": "ReducerOptions",
    "REDUCE_MAX": "ReducerOptions", "REDUCE_MIN": "ReducerOptions", "REDUCE_PROD": "ReducerOptions",
    "REDUCE_ANY": "ReducerOptions", "SQUEEZE": "SqueezeOptions", "STRIDED_SLICE": "StridedSliceOptions",
    "SPLIT": "SplitOptions", "SPLIT_V": "SplitVOptions", "CAST": "CastOptions", "ARG_MAX": "ArgMaxOptions",
    "ARG_MIN": "ArgMinOptions", "TRANSPOSE_CONV": "TransposeConvOptions", "SHAPE": "ShapeOptions",
    "PACK": "PackOptions", "UNPACK": "UnpackOptions", "LEAKY_RELU": "LeakyReluOptions",
    "MIRROR_PAD": "MirrorPadOptions", "SVDF": "SVDFOptions", "BATCH_MATMUL": "BatchMatMulOptions", "GELU": "GeluOptions",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTMOptions",
}

# Attributes that count something (strides, window sizes, dilations): a value
# below 1 would divide by zero or loop forever in any later pass.
POSITIVE_ATTRS = frozenset({"stride_w", "stride_h", "dilation_w_factor", "dilation_h_factor",
                            "filter_width", "filter_height"})
