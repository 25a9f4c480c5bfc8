from pinexa.users.v1 import users_pb2 as _users_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyCredentialsRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class VerifyCredentialsResponse(_message.Message):
    __slots__ = ("user_id", "role", "username", "email_verified", "totp_enabled")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    TOTP_ENABLED_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    role: _users_pb2.User.Role
    username: str
    email_verified: bool
    totp_enabled: bool
    def __init__(self, user_id: _Optional[str] = ..., role: _Optional[_Union[_users_pb2.User.Role, str]] = ..., username: _Optional[str] = ..., email_verified: _Optional[bool] = ..., totp_enabled: _Optional[bool] = ...) -> None: ...

class GetIdentityRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetIdentityResponse(_message.Message):
    __slots__ = ("user_id", "role", "username", "disabled", "email_verified", "totp_enabled")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    EMAIL_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    TOTP_ENABLED_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    role: _users_pb2.User.Role
    username: str
    disabled: bool
    email_verified: bool
    totp_enabled: bool
    def __init__(self, user_id: _Optional[str] = ..., role: _Optional[_Union[_users_pb2.User.Role, str]] = ..., username: _Optional[str] = ..., disabled: _Optional[bool] = ..., email_verified: _Optional[bool] = ..., totp_enabled: _Optional[bool] = ...) -> None: ...

class ResolveLoginRequest(_message.Message):
    __slots__ = ("login",)
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    login: str
    def __init__(self, login: _Optional[str] = ...) -> None: ...

class ResolveLoginResponse(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ChangePasswordRequest(_message.Message):
    __slots__ = ("user_id", "current_password", "new_password")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    current_password: str
    new_password: str
    def __init__(self, user_id: _Optional[str] = ..., current_password: _Optional[str] = ..., new_password: _Optional[str] = ...) -> None: ...

class ChangePasswordResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetDisabledRequest(_message.Message):
    __slots__ = ("user_id", "disabled")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    disabled: bool
    def __init__(self, user_id: _Optional[str] = ..., disabled: _Optional[bool] = ...) -> None: ...

class SetDisabledResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConfirmPasswordResetRequest(_message.Message):
    __slots__ = ("token", "new_password")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    token: str
    new_password: str
    def __init__(self, token: _Optional[str] = ..., new_password: _Optional[str] = ...) -> None: ...

class ConfirmPasswordResetResponse(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class VerifySecondFactorRequest(_message.Message):
    __slots__ = ("user_id", "code", "recovery_code")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_CODE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    code: str
    recovery_code: str
    def __init__(self, user_id: _Optional[str] = ..., code: _Optional[str] = ..., recovery_code: _Optional[str] = ...) -> None: ...

class VerifySecondFactorResponse(_message.Message):
    __slots__ = ("recovery_codes_left",)
    RECOVERY_CODES_LEFT_FIELD_NUMBER: _ClassVar[int]
    recovery_codes_left: int
    def __init__(self, recovery_codes_left: _Optional[int] = ...) -> None: ...

class RemoveSecondFactorRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class RemoveSecondFactorResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...
