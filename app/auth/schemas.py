from typing import Annotated, Literal

from pydantic import ConfigDict, EmailStr, Field, StringConstraints

from app.core.schemas import InputSchema, Schema
from app.users.schemas import UserProfile


class LoginRequest(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"email": "ada@builders.example", "password": "bazaar-demo-pass", "persona": "builder"}
            ]
        }
    )

    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    persona: Literal["super_admin", "builder", "end_user"] | None = Field(
        None, description="Persona to start in; defaults to the user's default persona"
    )


class RefreshRequest(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"refreshToken": "yvKHwW11ZxVHseDSTHVsflA2bIsNo190U6KqTBr8-8VB8t3W1PHCoPQx"}]
        }
    )

    refresh_token: Annotated[str, StringConstraints(min_length=10, max_length=200)]


class PersonaSwitch(InputSchema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"persona": "end_user"}]})

    persona: Literal["super_admin", "builder", "end_user"]


class CurrentUser(UserProfile):
    active_persona: str
    session_id: str
    permissions: list[str]


class TokenResponse(Schema):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    user: CurrentUser
