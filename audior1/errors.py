"""The error types that mean "bad input from the user": the CLI prints them as one line, not a traceback.

Each module owns its error class (named after what went wrong); this list only gathers them.
"""

from audior1.audio import AudioError
from audior1.chat import ConversationError, TokenizerError
from audior1.checkpoint import CheckpointError
from audior1.config import ConfigError
from audior1.data import DataError, ManifestError
from audior1.lora import AdapterError
from audior1.processor import MessageError
from audior1.quantize import QuantizeError
from audior1.sources import SourceError

USER_ERRORS: tuple[type[BaseException], ...] = (AdapterError, AudioError, CheckpointError, ConfigError,
                                                 ConversationError, DataError, ManifestError, MessageError,
                                                 QuantizeError, SourceError, TokenizerError, FileNotFoundError, NotADirectoryError)
