"""Which driver errors are retried: `db.errors.is_transient` and `translate_errors`."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from articles_client.errors import TransientError
from db.errors import is_transient, translate_errors

pytestmark = pytest.mark.unit


class DriverError(Exception):
    """Stands in for the adapted asyncpg error SQLAlchemy wraps: it carries a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def wrapped(cls: type[sa_exc.DBAPIError], sqlstate: str) -> sa_exc.DBAPIError:
    return cls("UPDATE articles ...", {}, DriverError(sqlstate))


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        ("40001", True),  # serialization_failure
        ("40P01", True),  # deadlock_detected
        ("57P01", True),  # admin_shutdown (server restarting)
        ("57P03", True),  # cannot_connect_now
        ("53300", True),  # too_many_connections
        ("08006", True),  # connection_failure
        ("08003", True),  # connection_does_not_exist
        ("23505", False),  # unique_violation: retrying cannot help
        ("23514", False),  # check_violation
        ("42P01", False),  # undefined_table: a bug or a missing migration
        ("22021", False),  # character_not_in_repertoire: bad data
        ("57014", True),  # query_canceled: statement_timeout fired
        ("55P03", True),  # lock_not_available: lock_timeout fired
    ],
)
def test_sqlstate_classification(sqlstate: str, transient: bool) -> None:
    assert is_transient(wrapped(sa_exc.DBAPIError, sqlstate)) is transient


def test_integrity_error_is_not_transient() -> None:
    assert is_transient(wrapped(sa_exc.IntegrityError, "23505")) is False


@pytest.mark.parametrize("cls", [sa_exc.OperationalError, sa_exc.InterfaceError])
def test_operational_and_interface_errors_are_transient(cls: type[sa_exc.DBAPIError]) -> None:
    assert is_transient(cls("SELECT 1", {}, Exception("gone"))) is True


def test_invalidated_connection_is_transient() -> None:
    error = sa_exc.DBAPIError("SELECT 1", {}, Exception("x"), connection_invalidated=True)
    assert is_transient(error) is True


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        OSError(113, "no route to host"),
        sa_exc.TimeoutError("QueuePool limit reached"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.TooManyConnectionsError("too many"),
        asyncpg.exceptions.InterfaceError("cannot perform operation"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 15"),
    ],
)
def test_connection_level_errors_are_transient(error: BaseException) -> None:
    assert is_transient(error) is True


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad"),
        KeyError("x"),
        FileNotFoundError(2, "no such file"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        sa_exc.ArgumentError("bad argument"),
    ],
)
def test_other_errors_are_not_transient(error: BaseException) -> None:
    assert is_transient(error) is False


def test_translate_wraps_transient_errors_keeping_the_cause() -> None:
    original = wrapped(sa_exc.DBAPIError, "40001")
    with pytest.raises(TransientError) as caught, translate_errors():
        raise original
    assert caught.value.__cause__ is original
    assert str(caught.value).startswith("transient database error: DBAPIError: ")


def test_translate_keeps_only_the_first_line_of_the_driver_message() -> None:
    error = ConnectionResetError("line one\nUPDATE articles SET body = 'secret text'")
    with pytest.raises(TransientError) as caught, translate_errors():
        raise error
    assert "secret text" not in str(caught.value)
    assert "line one" in str(caught.value)


def test_translate_lets_other_errors_through_unchanged() -> None:
    original = wrapped(sa_exc.IntegrityError, "23505")
    with pytest.raises(sa_exc.IntegrityError) as caught, translate_errors():
        raise original
    assert caught.value is original


def test_translate_does_not_wrap_twice() -> None:
    original = TransientError("already translated")
    with pytest.raises(TransientError) as caught, translate_errors():
        raise original
    assert caught.value is original
