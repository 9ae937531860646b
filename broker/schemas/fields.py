"""The field types and the base model the HTTP API's models share: metadata values, webhook
events and URLs, strings without NUL characters, and :class:`_Model`, which refuses unknown
fields.

Apart from the models themselves so that each group of them (:mod:`.requests`, :mod:`.http`,
:mod:`.admin`) can import these without importing the others; :mod:`.http` re-exports the
public ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MetadataValue = str | int | float | bool | None
WebhookEvent = Literal["job.finished", "request.finished"]

NUL_FREE = r"^[^\x00]*$"
"""What a string bound for a text column may be: PostgreSQL cannot store a NUL character, and
SQLite would keep it where PostgreSQL refuses it. (JSON columns, such as messages and metadata,
take one escaped.)"""


def no_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain a NUL character (\\x00)")
    return value


NulFree = Annotated[str, BeforeValidator(no_nul), Field(json_schema_extra={"pattern": NUL_FREE})]
"""A string without NUL characters, refused with a message that says so (422 naming the field);
the schema carries the rule as a pattern. Length limits go on the field as usual."""

WebhookUrl = Annotated[
    str,
    BeforeValidator(no_nul),
    Field(max_length=2048, pattern=r"^https?://"),
    Field(json_schema_extra={"pattern": r"^https?://[^\x00]*$"}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
