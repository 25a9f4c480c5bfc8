"""The security audit trail (issue 14) on the real auth and users servers over gRPC, on SQLite and
PostgreSQL (one database shared by both services, as the fixtures run them): a login, a failed
login and a password change appear with their request ids; users' ListAuditEvents merges auth's
records with its own in keyset pages; filters; who may read what; no secret in any record or
log line."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from pinexa.auth.v1 import auth_pb2
from pinexa.users.v1 import users_pb2
from services.auth.schema import audit_events as auth_audit_events
from services.kit import audit, sql
from services.kit.audit import AuditLog
from services.kit.logs import JsonFormatter
from services.users.schema import audit_events as users_audit_events
from tests.auth.conftest import PASSWORD, Stack, StartStack
from tests.auth.test_mfa import enrolled, mfa_token
from tests.support import bearer, mail_token, rpc_error, wait_until

ADMIN_PASSWORD = "admin password 1"
NEW_PASSWORD = "a brand new password"


async def admin_stack(start_stack: StartStack, **settings: object) -> tuple[Stack, str]:
    name = f"admin{uuid.uuid4().hex[:8]}"
    stack = await start_stack(
        admin_username=name, admin_email=f"{name}@example.com", admin_password=ADMIN_PASSWORD, **settings
    )
    admin = await stack.login(name, ADMIN_PASSWORD)
    return stack, admin.access_token


def rid(label: str) -> tuple[str, str]:
    return ("x-request-id", f"{label}-{uuid.uuid4().hex[:12]}")


async def all_events(stack: Stack, token: str, **request: object) -> list[users_pb2.AuditEvent]:
    found: list[users_pb2.AuditEvent] = []
    page_token = ""
    while True:
        page = await stack.users.ListAuditEvents(
            users_pb2.ListAuditEventsRequest(page_token=page_token, **request),  # type: ignore[arg-type]
            metadata=bearer(token),
        )
        found.extend(page.audit_events)
        if not page.next_page_token:
            return found
        page_token = page.next_page_token


async def test_login_failed_login_and_password_change_appear_with_their_request_ids(
    start_stack: StartStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stack, admin = await admin_stack(start_stack)
    user = await stack.sign_up()
    login_rid, failed_rid, change_rid = rid("login"), rid("failed"), rid("change")

    tokens = await stack.login(user.username, metadata=[login_rid])
    await rpc_error(
        stack.login(user.username, "not the password at all", metadata=[failed_rid]),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await stack.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=(*bearer(tokens.access_token), change_rid),
    )

    events = await all_events(stack, admin, filter=f'subject_id = "{user.id}"')
    by_rid = {event.request_id: event for event in events}
    login = by_rid[login_rid[1]]
    assert (login.type, login.outcome, login.service) == ("LOGIN_SUCCEEDED", "SUCCESS", "auth")
    assert login.actor_id == user.id and login.subject_id == user.id
    assert login.client_address == "127.0.0.1"  # a direct gRPC call: the peer's address
    assert login.detail["device_token"] == "none" and login.detail["session_id"]
    failed = by_rid[failed_rid[1]]
    assert (failed.type, failed.outcome, failed.actor_id) == ("LOGIN_FAILED", "FAILURE", "")
    assert failed.subject_id == user.id and failed.detail["reason"] == "INVALID_CREDENTIALS"
    # The password change: recorded by users (in the transaction that changed the hash), with
    # the request id and the client address auth forwarded on its internal call.
    change = [e for e in events if e.request_id == change_rid[1] and e.type == "PASSWORD_CHANGED"]
    assert len(change) == 1 and change[0].service == "users" and change[0].outcome == "SUCCESS"
    assert change[0].actor_id == user.id and change[0].client_address == "127.0.0.1"
    times = [(e.occurred_at.ToMilliseconds(), e.id) for e in events]
    assert times == sorted(times, reverse=True)  # newest first

    # The user reads the same events of their own account.
    own = await stack.users.ListUserAuditEvents(
        users_pb2.ListUserAuditEventsRequest(id=user.id, page_size=100),
        metadata=bearer((await stack.login(user.username, NEW_PASSWORD)).access_token),
    )
    assert {login_rid[1], failed_rid[1], change_rid[1]} <= {e.request_id for e in own.audit_events}

    # Every record is also one structured log line.
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "pinexa.audit"]
    assert any(login_rid[1] in line and '"audit_type": "LOGIN_SUCCEEDED"' in line for line in lines)
    assert any(change_rid[1] in line and '"audit_type": "PASSWORD_CHANGED"' in line for line in lines)


async def test_no_password_token_or_hash_in_any_record_or_log_line(
    start_stack: StartStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stack, admin = await admin_stack(start_stack)
    wrong = "wrong-password-" + uuid.uuid4().hex
    user = await stack.sign_up()
    tokens = await stack.login(user.username)
    await rpc_error(stack.login(user.username, wrong), grpc.StatusCode.UNAUTHENTICATED)
    # A password typed as the login name must not be recorded either.
    await rpc_error(stack.login(wrong, wrong), grpc.StatusCode.UNAUTHENTICATED)
    refreshed = await stack.refresh(tokens.refresh_token)
    await stack.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=bearer(refreshed.access_token),
    )
    stack.clock.advance(60)  # past the reuse grace window
    await rpc_error(stack.refresh(tokens.refresh_token), grpc.StatusCode.UNAUTHENTICATED)

    secrets = {
        PASSWORD,
        NEW_PASSWORD,
        wrong,
        ADMIN_PASSWORD,
        tokens.access_token,
        tokens.refresh_token,
        tokens.device_token,
        refreshed.access_token,
        refreshed.refresh_token,
    }
    secrets |= {hashlib.sha256(s.encode()).hexdigest() for s in list(secrets)}
    events = await all_events(stack, admin)
    types = {e.type for e in events}
    assert {
        "LOGIN_SUCCEEDED",
        "LOGIN_FAILED",
        "PASSWORD_CHANGED",
        "REFRESH_TOKEN_REUSED",
        "SESSION_REVOKED",
    } <= types
    dumped = json.dumps([str(e) for e in events])
    lines = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "pinexa.audit" in lines
    for secret in secrets:
        assert secret not in dumped
        assert secret not in lines
    assert "$argon2" not in dumped and "$argon2" not in lines


async def test_pages_merge_both_services_and_filters_apply(start_stack: StartStack) -> None:
    stack, admin = await admin_stack(start_stack)
    user = await stack.sign_up()
    before = datetime.now(UTC) - timedelta(seconds=1)
    tokens = await stack.login(user.username)
    for _ in range(3):
        await rpc_error(
            stack.login(user.username, "not the password at all"), grpc.StatusCode.UNAUTHENTICATED
        )
    await stack.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=bearer(tokens.access_token),
    )
    mine = f'subject_id = "{user.id}"'
    everything = await all_events(stack, admin, filter=mine, page_size=100)
    assert {e.service for e in everything} == {"auth", "users"}
    # Pages of 2 give the same records in the same order: none skipped, none repeated.
    paged = await all_events(stack, admin, filter=mine, page_size=2)
    assert [e.id for e in paged] == [e.id for e in everything] and len(paged) >= 5

    failed = await all_events(stack, admin, filter=f"{mine} AND type = LOGIN_FAILED")
    assert len(failed) == 3 and {e.type for e in failed} == {"LOGIN_FAILED"}
    not_failed = await all_events(stack, admin, filter=f"{mine} AND NOT type = LOGIN_FAILED")
    assert len(not_failed) == len(everything) - 3
    quoted = await all_events(
        stack, admin, filter=f'{mine} AND (type = "PASSWORD_CHANGED" OR outcome = FAILURE)'
    )
    assert len(quoted) == 4
    since = before.isoformat().replace("+00:00", "Z")
    assert len(await all_events(stack, admin, filter=f'{mine} AND occurred_at >= "{since}"')) == len(
        everything
    )
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await all_events(stack, admin, filter=f'{mine} AND occurred_at > "{later}"') == []
    by_actor = await all_events(stack, admin, filter=f'actor_id = "{user.id}"')
    assert {e.type for e in by_actor} >= {"LOGIN_SUCCEEDED", "PASSWORD_CHANGED"}

    # A bad filter is INVALID_FILTER naming the problem; a token is bound to its filter.
    error = await rpc_error(
        stack.users.ListAuditEvents(
            users_pb2.ListAuditEventsRequest(filter="password = 1"), metadata=bearer(admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FILTER",
    )
    assert "unknown field 'password'" in (error.details() or "")
    await rpc_error(
        stack.users.ListAuditEvents(
            users_pb2.ListAuditEventsRequest(filter="type = NOPE"), metadata=bearer(admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FILTER",
    )
    first = await stack.users.ListAuditEvents(
        users_pb2.ListAuditEventsRequest(filter=mine, page_size=1), metadata=bearer(admin)
    )
    await rpc_error(
        stack.users.ListAuditEvents(
            users_pb2.ListAuditEventsRequest(page_token=first.next_page_token), metadata=bearer(admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await rpc_error(
        stack.users.ListAuditEvents(
            users_pb2.ListAuditEventsRequest(page_token="garbage"), metadata=bearer(admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_who_may_read_what(start_stack: StartStack) -> None:
    stack, admin = await admin_stack(start_stack)
    alice, bob = await stack.sign_up(), await stack.sign_up()
    alice_token = (await stack.login(alice.username)).access_token
    await stack.login(bob.username)

    # Everyone's events: admins only.
    await rpc_error(
        stack.users.ListAuditEvents(users_pb2.ListAuditEventsRequest(), metadata=bearer(alice_token)),
        grpc.StatusCode.PERMISSION_DENIED,
        "ADMIN_ONLY",
    )
    # Another account's events: refused, before anything is read.
    await rpc_error(
        stack.users.ListUserAuditEvents(
            users_pb2.ListUserAuditEventsRequest(id=bob.id), metadata=bearer(alice_token)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # Without a token: UNAUTHENTICATED.
    await rpc_error(
        stack.users.ListUserAuditEvents(users_pb2.ListUserAuditEventsRequest(id=alice.id)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    # Her own: only hers, even with a filter naming someone else.
    own = await stack.users.ListUserAuditEvents(
        users_pb2.ListUserAuditEventsRequest(id=alice.id, filter=f'subject_id = "{bob.id}"'),
        metadata=bearer(alice_token),
    )
    assert list(own.audit_events) == []
    own = await stack.users.ListUserAuditEvents(
        users_pb2.ListUserAuditEventsRequest(id=alice.id), metadata=bearer(alice_token)
    )
    assert own.audit_events and {e.subject_id for e in own.audit_events} == {alice.id}
    # An admin reads bob's.
    bobs = await stack.users.ListUserAuditEvents(
        users_pb2.ListUserAuditEventsRequest(id=bob.id), metadata=bearer(admin)
    )
    assert {e.type for e in bobs.audit_events} == {"ACCOUNT_CREATED", "LOGIN_SUCCEEDED"}
    # No account named: INVALID_ARGUMENT (never everyone's events).
    await rpc_error(
        stack.users.ListUserAuditEvents(users_pb2.ListUserAuditEventsRequest(id=""), metadata=bearer(admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_admin_actions_role_change_and_delete_are_recorded(start_stack: StartStack) -> None:
    stack, admin = await admin_stack(start_stack)
    admin_id = (await stack.me(admin)).id
    user = await stack.sign_up()
    change = rid("role")
    await stack.users.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(id=user.id, role=users_pb2.User.ADMIN, display_name="Promoted"),
            update_mask={"paths": ["role", "display_name"]},
        ),
        metadata=(*bearer(admin), change),
    )
    await stack.auth.DisableUser(auth_pb2.DisableUserRequest(id=user.id), metadata=bearer(admin))
    await stack.users.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=bearer(admin))
    events = await all_events(stack, admin, filter=f'subject_id = "{user.id}" AND actor_id = "{admin_id}"')
    kinds = [e.type for e in reversed(events)]
    assert kinds[:2] == ["ROLE_CHANGED", "ACCOUNT_UPDATED_BY_ADMIN"] or kinds[:2] == [
        "ACCOUNT_UPDATED_BY_ADMIN",
        "ROLE_CHANGED",
    ]
    assert "ACCOUNT_DISABLED" in kinds and kinds[-1] == "ACCOUNT_DELETED"
    role = next(e for e in events if e.type == "ROLE_CHANGED")
    assert dict(role.detail) == {"role": "admin", "previous_role": "user"} and role.request_id == change[1]
    fields = next(e for e in events if e.type == "ACCOUNT_UPDATED_BY_ADMIN")
    assert fields.detail["fields"] == "display_name,role"


async def _mailed_token(stack: Stack, address: str) -> str:
    """The token of the first mail `address` received (its verification link; real SMTP server)."""

    async def arrived() -> bool:
        return any(m["To"] == address for m in stack.mailbox.messages)

    await wait_until(arrived, timeout=10, what=f"the mail to {address}")
    return mail_token(next(m for m in stack.mailbox.messages if m["To"] == address))


async def _types(stack: Stack, admin: str, user_id: str) -> list[str]:
    """The account's event types, oldest first."""
    return [e.type for e in reversed(await all_events(stack, admin, filter=f'subject_id = "{user_id}"'))]


async def test_every_security_action_of_an_account_is_recorded(start_stack: StartStack) -> None:
    """Sign-up, e-mail verified, an e-mail change (EMAIL_CHANGED only once the new address is
    confirmed), logins ok/failed/throttled, logout, a session ended, an admin's sign-out,
    disable/enable and the account's deletion: each has its record, in order."""
    stack, admin = await admin_stack(start_stack, login_max_failures=2)
    admin_id = (await stack.me(admin)).id
    user = await stack.sign_up()
    assert await _types(stack, admin, user.id) == ["ACCOUNT_CREATED"]
    [created] = await all_events(stack, admin, filter=f'subject_id = "{user.id}"')
    assert (created.actor_id, created.service, dict(created.detail)) == (user.id, "users", {"role": "user"})

    await stack.users.VerifyEmail(users_pb2.VerifyEmailRequest(token=await _mailed_token(stack, user.email)))
    first = await stack.login(user.username)
    new_address = f"new-{user.username}@example.com"
    await stack.users.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(id=user.id, email=new_address), update_mask={"paths": ["email"]}
        ),
        metadata=bearer(first.access_token),
    )
    # Asked for, not yet changed: the old address is still the account's.
    types = await _types(stack, admin, user.id)
    assert "EMAIL_CHANGE_REQUESTED" in types and "EMAIL_CHANGED" not in types
    confirm = rid("confirm")
    await stack.users.VerifyEmail(
        users_pb2.VerifyEmailRequest(token=await _mailed_token(stack, new_address)), metadata=[confirm]
    )
    [changed] = await all_events(stack, admin, filter=f'subject_id = "{user.id}" AND type = EMAIL_CHANGED')
    assert (changed.actor_id, changed.request_id, changed.service) == (user.id, confirm[1], "users")
    assert dict(changed.detail) == {}  # neither address: personal data stays in the users table

    # Asked for and then cancelled by asking for the current address again.
    for address in (f"other-{user.username}@example.com", new_address):
        await stack.users.UpdateUser(
            users_pb2.UpdateUserRequest(
                user=users_pb2.User(id=user.id, email=address), update_mask={"paths": ["email"]}
            ),
            metadata=bearer(first.access_token),
        )

    await stack.auth.Logout(auth_pb2.LogoutRequest(refresh_token=first.refresh_token))
    second = await stack.login(user.username)
    await stack.login(user.username)
    sessions = await stack.auth.ListSessions(
        auth_pb2.ListSessionsRequest(), metadata=bearer(second.access_token)
    )
    ended = next(s.id for s in sessions.sessions if not s.current)
    await stack.auth.DeleteSession(
        auth_pb2.DeleteSessionRequest(id=ended), metadata=bearer(second.access_token)
    )
    signed_out = await stack.auth.SignOutUser(auth_pb2.SignOutUserRequest(id=user.id), metadata=bearer(admin))
    assert signed_out.revoked_sessions == 1

    for _ in range(2):
        await rpc_error(
            stack.login(user.username, "not the password at all"), grpc.StatusCode.UNAUTHENTICATED
        )
    await rpc_error(stack.login(user.username), grpc.StatusCode.RESOURCE_EXHAUSTED)

    await stack.auth.DisableUser(auth_pb2.DisableUserRequest(id=user.id), metadata=bearer(admin))
    await stack.auth.EnableUser(auth_pb2.EnableUserRequest(id=user.id), metadata=bearer(admin))
    await stack.users.DeleteUser(users_pb2.DeleteUserRequest(id=user.id), metadata=bearer(admin))

    events = list(reversed(await all_events(stack, admin, filter=f'subject_id = "{user.id}"')))
    # Compared as a multiset: two records in the same millisecond list in either order.
    assert Counter(e.type for e in events) == Counter(
        [
            "ACCOUNT_CREATED",
            "EMAIL_VERIFIED",
            "LOGIN_SUCCEEDED",
            "EMAIL_CHANGE_REQUESTED",
            "EMAIL_CHANGED",
            "EMAIL_CHANGE_REQUESTED",
            "EMAIL_CHANGE_CANCELLED",
            "SESSION_REVOKED",  # logout
            "LOGIN_SUCCEEDED",
            "LOGIN_SUCCEEDED",
            "SESSION_REVOKED",  # the session deleted
            "SESSION_REVOKED",  # the admin's sign-out ended the last one
            "SIGNED_OUT_BY_ADMIN",
            "LOGIN_FAILED",
            "LOGIN_FAILED",
            "LOGIN_THROTTLED",
            "ACCOUNT_DISABLED",
            "ACCOUNT_ENABLED",
            "ACCOUNT_DELETED",
        ]
    )
    assert events[0].type == "ACCOUNT_CREATED" and events[-1].type == "ACCOUNT_DELETED"
    reasons = sorted(e.detail["reason"] for e in events if e.type == "SESSION_REVOKED")
    assert reasons == ["admin_sign_out", "logout", "session_deleted"]
    by_type = {e.type: e for e in events}
    assert dict(by_type["SIGNED_OUT_BY_ADMIN"].detail) == {"sessions": "1"}
    assert by_type["LOGIN_THROTTLED"].outcome == "REFUSED"
    # The admin's actions name the admin, also where auth asked users on the admin's behalf.
    for kind in ("SIGNED_OUT_BY_ADMIN", "ACCOUNT_DISABLED", "ACCOUNT_ENABLED", "ACCOUNT_DELETED"):
        assert by_type[kind].actor_id == admin_id, kind
    assert (by_type["ACCOUNT_DISABLED"].service, by_type["SIGNED_OUT_BY_ADMIN"].service) == ("users", "auth")


async def test_both_services_purge_records_past_audit_retention_days(
    start_stack: StartStack, sql_url: str
) -> None:
    """AUDIT_RETENTION_DAYS: at start (then hourly) users and auth delete their older records."""
    stack, admin = await admin_stack(start_stack)  # migrated
    user = await stack.sign_up()
    old, recent = time.time() - 3 * 86400, time.time() - 86400
    engine = sql.create_engine(sql_url)
    try:
        for service, table in (("users", users_audit_events), ("auth", auth_audit_events)):
            log = AuditLog(engine, table)
            for at in (old, recent):
                await log.record(audit.new_event(service, audit.LOGIN_FAILED, subject_id=user.id, now=at))
    finally:
        await engine.dispose()

    def dated() -> Awaitable[list[users_pb2.AuditEvent]]:
        return all_events(stack, admin, filter=f'subject_id = "{user.id}" AND type = LOGIN_FAILED')

    assert len(await dated()) == 4
    await start_stack(audit_retention_days=2)  # a restart with a shorter retention

    async def purged() -> bool:
        return len(await dated()) == 2

    await wait_until(purged, timeout=20, what="the start-up purge of both services")
    kept = await dated()
    assert {e.service for e in kept} == {"users", "auth"}
    assert all(e.occurred_at.ToMilliseconds() == int(recent * 1000) for e in kept)


def _of(events: list[users_pb2.AuditEvent], kind: str) -> list[users_pb2.AuditEvent]:
    return [e for e in events if e.type == kind]


async def test_a_login_with_a_second_factor_is_recorded_step_by_step(start_stack: StartStack) -> None:
    """The factor enabled; the password step (LOGIN_MFA_REQUIRED); a wrong code (LOGIN_FAILED);
    the code (LOGIN_SUCCEEDED, method totp); a recovery code (RECOVERY_CODE_USED and
    LOGIN_SUCCEEDED, method recovery_code). Never a code or the secret."""
    stack, admin = await admin_stack(start_stack)
    user, device, codes = await enrolled(stack)
    await rpc_error(
        stack.auth.LoginMfa(
            auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, user.username), code=device.code(3))
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_SECOND_FACTOR",
    )
    await stack.auth.LoginMfa(
        auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, user.username), code=device.code())
    )
    await stack.auth.LoginMfa(
        auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, user.username), recovery_code=codes[0])
    )

    events = await all_events(stack, admin, filter=f'subject_id = "{user.id}"')
    [enabled] = _of(events, "SECOND_FACTOR_ENABLED")
    assert (enabled.actor_id, enabled.service, dict(enabled.detail)) == (user.id, "users", {"method": "totp"})
    required = _of(events, "LOGIN_MFA_REQUIRED")
    assert len(required) == 3 and all(e.outcome == "SUCCESS" and e.service == "auth" for e in required)
    [failed] = _of(events, "LOGIN_FAILED")
    assert dict(failed.detail) == {"reason": "INVALID_SECOND_FACTOR", "method": "totp"}
    methods = sorted(e.detail.get("method", "") for e in _of(events, "LOGIN_SUCCEEDED"))
    assert methods == ["", "recovery_code", "totp"]  # the first: the password login before enrolling
    [used] = _of(events, "RECOVERY_CODE_USED")
    assert (used.actor_id, used.service) == (user.id, "users")
    dumped = json.dumps([str(e) for e in events])
    for secret in (*codes, device.code(), device.code(3), device.totp.secret):
        assert secret not in dumped


async def test_second_factor_changes_and_an_admin_s_removal_are_recorded(start_stack: StartStack) -> None:
    """Step-up (REAUTHENTICATED, and FAILURE with a wrong code), new recovery codes, disabling
    it; and an admin removing another account's factor (the admin is the actor; its sessions end)."""
    stack, admin = await admin_stack(start_stack)
    admin_id = (await stack.me(admin)).id
    user, device, _codes = await enrolled(stack)
    pair = await stack.auth.LoginMfa(
        auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, user.username), code=device.code())
    )
    await rpc_error(
        stack.auth.Reauthenticate(
            auth_pb2.ReauthenticateRequest(code=device.code(3)), metadata=bearer(pair.access_token)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_SECOND_FACTOR",
    )
    stepped = await stack.auth.Reauthenticate(
        auth_pb2.ReauthenticateRequest(code=device.code(1)), metadata=bearer(pair.access_token)
    )
    fresh = bearer(stepped.access_token)
    await stack.users.RegenerateRecoveryCodes(
        users_pb2.RegenerateRecoveryCodesRequest(id=user.id), metadata=fresh
    )
    await stack.users.DisableTotp(users_pb2.DisableTotpRequest(id=user.id), metadata=fresh)

    other, other_device, _ = await enrolled(stack)
    await stack.auth.LoginMfa(
        auth_pb2.LoginMfaRequest(mfa_token=await mfa_token(stack, other.username), code=other_device.code())
    )
    await stack.auth.RemoveSecondFactor(
        auth_pb2.RemoveSecondFactorRequest(id=other.id), metadata=bearer(admin)
    )

    mine = await all_events(stack, admin, filter=f'subject_id = "{user.id}"')
    step_ups = _of(mine, "REAUTHENTICATED")
    assert sorted(e.outcome for e in step_ups) == ["FAILURE", "SUCCESS"]
    assert all(e.actor_id == user.id and e.detail["session_id"] for e in step_ups)
    for kind in ("SECOND_FACTOR_RECOVERY_CODES_REGENERATED", "SECOND_FACTOR_DISABLED"):
        [event] = _of(mine, kind)
        assert (event.actor_id, event.service) == (user.id, "users"), kind
    theirs = await all_events(stack, admin, filter=f'subject_id = "{other.id}"')
    [removed] = _of(theirs, "SECOND_FACTOR_REMOVED_BY_ADMIN")
    assert (removed.actor_id, removed.service) == (admin_id, "users")
    reasons = {e.detail["reason"] for e in _of(theirs, "SESSION_REVOKED")}
    assert reasons == {"second_factor_removed"}


async def test_a_password_reset_is_recorded_when_asked_for_and_when_confirmed(
    start_stack: StartStack,
) -> None:
    """PASSWORD_RESET_REQUESTED for every request (an unknown address too, with no account and no
    address in the record: the same statements run either way), PASSWORD_RESET when the link is
    used, and the sessions it ended; never the token."""
    stack, admin = await admin_stack(start_stack)
    user = await stack.sign_up()
    await stack.login(user.username)
    asked, unknown, done = rid("ask"), rid("unknown"), rid("confirm")
    await stack.users.RequestPasswordReset(
        users_pb2.RequestPasswordResetRequest(email=user.email), metadata=[asked]
    )
    stranger = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    await stack.users.RequestPasswordReset(
        users_pb2.RequestPasswordResetRequest(email=stranger), metadata=[unknown]
    )

    async def mailed() -> bool:
        return any(m["To"] == user.email and "Reset" in str(m["Subject"]) for m in stack.mailbox.messages)

    await wait_until(mailed, timeout=10, what="the reset mail")
    message = next(
        m for m in stack.mailbox.messages if m["To"] == user.email and "Reset" in str(m["Subject"])
    )
    token = mail_token(message, "/reset-password")
    await stack.auth.ConfirmPasswordReset(
        auth_pb2.ConfirmPasswordResetRequest(token=token, new_password=NEW_PASSWORD), metadata=[done]
    )

    events = await all_events(stack, admin)
    by_rid: dict[str, list[users_pb2.AuditEvent]] = {}
    for event in events:
        by_rid.setdefault(event.request_id, []).append(event)
    [request] = by_rid[asked[1]]
    assert (request.type, request.outcome, request.subject_id, request.actor_id) == (
        "PASSWORD_RESET_REQUESTED",
        "SUCCESS",
        user.id,
        "",
    )
    [probe] = by_rid[unknown[1]]
    assert (probe.type, probe.outcome, probe.subject_id, dict(probe.detail)) == (
        "PASSWORD_RESET_REQUESTED",
        "FAILURE",
        "",
        {"reason": "UNKNOWN_ADDRESS"},
    )
    confirmed = {e.type: e for e in by_rid[done[1]]}
    assert set(confirmed) == {"PASSWORD_RESET", "SESSION_REVOKED"}
    assert (confirmed["PASSWORD_RESET"].subject_id, confirmed["PASSWORD_RESET"].actor_id) == (
        user.id,
        user.id,
    )
    assert confirmed["SESSION_REVOKED"].detail["reason"] == "password_reset"
    dumped = json.dumps([str(e) for e in events])
    assert token not in dumped and stranger not in dumped and user.email not in dumped
