from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InputType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INPUT_TYPE_UNSPECIFIED: _ClassVar[InputType]
    INPUT_TYPE_QUERY: _ClassVar[InputType]
    INPUT_TYPE_DOCUMENT: _ClassVar[InputType]

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    ENCODING_FLOAT32: _ClassVar[Encoding]
    ENCODING_FLOAT16: _ClassVar[Encoding]
    ENCODING_INT8: _ClassVar[Encoding]
    ENCODING_UINT8: _ClassVar[Encoding]
    ENCODING_BINARY: _ClassVar[Encoding]
    ENCODING_UBINARY: _ClassVar[Encoding]

class Truncate(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRUNCATE_END: _ClassVar[Truncate]
    TRUNCATE_NONE: _ClassVar[Truncate]
INPUT_TYPE_UNSPECIFIED: InputType
INPUT_TYPE_QUERY: InputType
INPUT_TYPE_DOCUMENT: InputType
ENCODING_UNSPECIFIED: Encoding
ENCODING_FLOAT32: Encoding
ENCODING_FLOAT16: Encoding
ENCODING_INT8: Encoding
ENCODING_UINT8: Encoding
ENCODING_BINARY: Encoding
ENCODING_UBINARY: Encoding
TRUNCATE_END: Truncate
TRUNCATE_NONE: Truncate

class EmbedRequest(_message.Message):
    __slots__ = ("inputs", "input_type", "dimensions", "encoding", "layers", "truncate")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedScalarFieldContainer[str]
    input_type: InputType
    dimensions: int
    encoding: Encoding
    layers: int
    truncate: Truncate
    def __init__(self, inputs: _Optional[_Iterable[str]] = ..., input_type: _Optional[_Union[InputType, str]] = ..., dimensions: _Optional[int] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., layers: _Optional[int] = ..., truncate: _Optional[_Union[Truncate, str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values", "data")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    data: bytes
    def __init__(self, values: _Optional[_Iterable[float]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "tokens_per_input")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_INPUT_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    tokens_per_input: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, input_tokens: _Optional[int] = ..., tokens_per_input: _Optional[_Iterable[int]] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("queue_ns", "tokenization_ns", "inference_ns", "total_ns")
    QUEUE_NS_FIELD_NUMBER: _ClassVar[int]
    TOKENIZATION_NS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_NS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NS_FIELD_NUMBER: _ClassVar[int]
    queue_ns: int
    tokenization_ns: int
    inference_ns: int
    total_ns: int
    def __init__(self, queue_ns: _Optional[int] = ..., tokenization_ns: _Optional[int] = ..., inference_ns: _Optional[int] = ..., total_ns: _Optional[int] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "dimensions", "encoding", "model", "encoder", "usage", "timing", "fallback", "space_id", "layers", "error")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    dimensions: int
    encoding: Encoding
    model: str
    encoder: str
    usage: Usage
    timing: Timing
    fallback: bool
    space_id: str
    layers: int
    error: Status
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., dimensions: _Optional[int] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., model: _Optional[str] = ..., encoder: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., fallback: _Optional[bool] = ..., space_id: _Optional[str] = ..., layers: _Optional[int] = ..., error: _Optional[_Union[Status, _Mapping]] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class TokenizeRequest(_message.Message):
    __slots__ = ("inputs", "input_type", "add_prompt")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ADD_PROMPT_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedScalarFieldContainer[str]
    input_type: InputType
    add_prompt: bool
    def __init__(self, inputs: _Optional[_Iterable[str]] = ..., input_type: _Optional[_Union[InputType, str]] = ..., add_prompt: _Optional[bool] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("id", "text", "start", "stop", "special")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SPECIAL_FIELD_NUMBER: _ClassVar[int]
    id: int
    text: str
    start: int
    stop: int
    special: bool
    def __init__(self, id: _Optional[int] = ..., text: _Optional[str] = ..., start: _Optional[int] = ..., stop: _Optional[int] = ..., special: _Optional[bool] = ...) -> None: ...

class TokenizedInput(_message.Message):
    __slots__ = ("tokens", "exceeds_max_tokens")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXCEEDS_MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    exceeds_max_tokens: bool
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., exceeds_max_tokens: _Optional[bool] = ...) -> None: ...

class TokenizeResponse(_message.Message):
    __slots__ = ("inputs", "max_input_tokens", "model")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[TokenizedInput]
    max_input_tokens: int
    model: str
    def __init__(self, inputs: _Optional[_Iterable[_Union[TokenizedInput, _Mapping]]] = ..., max_input_tokens: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PoolInfo(_message.Message):
    __slots__ = ("role", "model", "space_id", "replicas", "healthy_replicas", "serving", "device", "dtype", "max_input_tokens", "layer_options", "replica_states")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LAYER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_STATES_FIELD_NUMBER: _ClassVar[int]
    role: str
    model: str
    space_id: str
    replicas: _containers.RepeatedScalarFieldContainer[str]
    healthy_replicas: int
    serving: bool
    device: str
    dtype: str
    max_input_tokens: int
    layer_options: _containers.RepeatedScalarFieldContainer[int]
    replica_states: _containers.RepeatedCompositeFieldContainer[ReplicaState]
    def __init__(self, role: _Optional[str] = ..., model: _Optional[str] = ..., space_id: _Optional[str] = ..., replicas: _Optional[_Iterable[str]] = ..., healthy_replicas: _Optional[int] = ..., serving: _Optional[bool] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., max_input_tokens: _Optional[int] = ..., layer_options: _Optional[_Iterable[int]] = ..., replica_states: _Optional[_Iterable[_Union[ReplicaState, _Mapping]]] = ...) -> None: ...

class ReplicaState(_message.Message):
    __slots__ = ("target", "healthy", "problem", "verified")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    target: str
    healthy: bool
    problem: str
    verified: bool
    def __init__(self, target: _Optional[str] = ..., healthy: _Optional[bool] = ..., problem: _Optional[str] = ..., verified: _Optional[bool] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("space_id", "dimensions", "matryoshka_dimensions", "layer_options", "max_input_tokens", "encodings", "pools", "max_inputs_per_request", "calibrated", "serving", "problem")
    SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MATRYOSHKA_DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    LAYER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUTS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    space_id: str
    dimensions: int
    matryoshka_dimensions: _containers.RepeatedScalarFieldContainer[int]
    layer_options: _containers.RepeatedScalarFieldContainer[int]
    max_input_tokens: int
    encodings: _containers.RepeatedScalarFieldContainer[Encoding]
    pools: _containers.RepeatedCompositeFieldContainer[PoolInfo]
    max_inputs_per_request: int
    calibrated: bool
    serving: bool
    problem: str
    def __init__(self, space_id: _Optional[str] = ..., dimensions: _Optional[int] = ..., matryoshka_dimensions: _Optional[_Iterable[int]] = ..., layer_options: _Optional[_Iterable[int]] = ..., max_input_tokens: _Optional[int] = ..., encodings: _Optional[_Iterable[_Union[Encoding, str]]] = ..., pools: _Optional[_Iterable[_Union[PoolInfo, _Mapping]]] = ..., max_inputs_per_request: _Optional[int] = ..., calibrated: _Optional[bool] = ..., serving: _Optional[bool] = ..., problem: _Optional[str] = ...) -> None: ...
