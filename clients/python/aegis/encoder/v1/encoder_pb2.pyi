from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncodeRequest(_message.Message):
    __slots__ = ("texts", "prompt_name", "layers", "reject_overlong")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_NAME_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    REJECT_OVERLONG_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    prompt_name: str
    layers: int
    reject_overlong: bool
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., prompt_name: _Optional[str] = ..., layers: _Optional[int] = ..., reject_overlong: _Optional[bool] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("matrix", "rows", "cols", "token_counts", "queue_ns", "tokenization_ns", "inference_ns", "model", "layers")
    MATRIX_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_NS_FIELD_NUMBER: _ClassVar[int]
    TOKENIZATION_NS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_NS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    matrix: bytes
    rows: int
    cols: int
    token_counts: _containers.RepeatedScalarFieldContainer[int]
    queue_ns: int
    tokenization_ns: int
    inference_ns: int
    model: str
    layers: int
    def __init__(self, matrix: _Optional[bytes] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., token_counts: _Optional[_Iterable[int]] = ..., queue_ns: _Optional[int] = ..., tokenization_ns: _Optional[int] = ..., inference_ns: _Optional[int] = ..., model: _Optional[str] = ..., layers: _Optional[int] = ...) -> None: ...

class TokenizeRequest(_message.Message):
    __slots__ = ("texts", "prompt_name")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_NAME_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    prompt_name: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., prompt_name: _Optional[str] = ...) -> None: ...

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

class TokenizedText(_message.Message):
    __slots__ = ("tokens", "exceeds_max_tokens")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXCEEDS_MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    exceeds_max_tokens: bool
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., exceeds_max_tokens: _Optional[bool] = ...) -> None: ...

class TokenizeResponse(_message.Message):
    __slots__ = ("texts", "max_input_tokens", "model")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedCompositeFieldContainer[TokenizedText]
    max_input_tokens: int
    model: str
    def __init__(self, texts: _Optional[_Iterable[_Union[TokenizedText, _Mapping]]] = ..., max_input_tokens: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("model", "space_id", "dimensions", "matryoshka_dimensions", "layer_options", "max_input_tokens", "device", "dtype", "role", "prompts", "calibration", "max_batch_texts", "canaries")
    class PromptsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MATRYOSHKA_DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    LAYER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_TEXTS_FIELD_NUMBER: _ClassVar[int]
    CANARIES_FIELD_NUMBER: _ClassVar[int]
    model: str
    space_id: str
    dimensions: int
    matryoshka_dimensions: _containers.RepeatedScalarFieldContainer[int]
    layer_options: _containers.RepeatedScalarFieldContainer[int]
    max_input_tokens: int
    device: str
    dtype: str
    role: str
    prompts: _containers.ScalarMap[str, str]
    calibration: _containers.RepeatedCompositeFieldContainer[CalibrationRanges]
    max_batch_texts: int
    canaries: Canaries
    def __init__(self, model: _Optional[str] = ..., space_id: _Optional[str] = ..., dimensions: _Optional[int] = ..., matryoshka_dimensions: _Optional[_Iterable[int]] = ..., layer_options: _Optional[_Iterable[int]] = ..., max_input_tokens: _Optional[int] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., role: _Optional[str] = ..., prompts: _Optional[_Mapping[str, str]] = ..., calibration: _Optional[_Iterable[_Union[CalibrationRanges, _Mapping]]] = ..., max_batch_texts: _Optional[int] = ..., canaries: _Optional[_Union[Canaries, _Mapping]] = ...) -> None: ...

class Canaries(_message.Message):
    __slots__ = ("texts", "vectors", "dimensions", "prompt_name", "digest")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    vectors: bytes
    dimensions: int
    prompt_name: str
    digest: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., vectors: _Optional[bytes] = ..., dimensions: _Optional[int] = ..., prompt_name: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class CalibrationRanges(_message.Message):
    __slots__ = ("dimensions", "minimum", "maximum")
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    dimensions: int
    minimum: _containers.RepeatedScalarFieldContainer[float]
    maximum: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, dimensions: _Optional[int] = ..., minimum: _Optional[_Iterable[float]] = ..., maximum: _Optional[_Iterable[float]] = ...) -> None: ...
