"""The answer to a VerificationRequestEvent: action plus at most one method object."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["allow", "deny"]
CodeType = Literal["Numeric", "Alpha", "Alphanumeric"]


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class SmsAnswer(_Answer):
    code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,10}$")
    code_type: CodeType | None = Field(default=None, alias="codeType")
    expiry: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}:\d{2}$")
    accept_language: list[str] | None = Field(default=None, alias="acceptLanguage")


class FlashCallAnswer(_Answer):
    cli: str | None = None
    dial_timeout: int | None = Field(default=None, alias="dialTimeout", ge=5, le=120)
    interception_timeout: int | None = Field(
        default=None, alias="interceptionTimeout", ge=5, le=120
    )


class Speech(_Answer):
    locale: str


class CalloutAnswer(_Answer):
    code: str | None = None
    speech: Speech | None = None


class WhatsAppAnswer(_Answer):
    code_type: CodeType | None = Field(default=None, alias="codeType")
    accept_language: list[str] | None = Field(default=None, alias="acceptLanguage")


class RequestAnswer(_Answer):
    action: Action
    sms: SmsAnswer | None = None
    flash_call: FlashCallAnswer | None = Field(default=None, alias="flashCall")
    callout: CalloutAnswer | None = None
    whatsapp: WhatsAppAnswer | None = None

    def wire(self) -> dict[str, Any]:
        """The JSON Sinch expects: camelCase keys, no nulls, an empty method object dropped."""
        body = self.model_dump(by_alias=True, exclude_none=True)
        return {k: v for k, v in body.items() if k == "action" or v}
