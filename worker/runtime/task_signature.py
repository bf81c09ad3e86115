"""What an `@async_task` function accepts, read once from its signature, and its payload checks.

The parameters split three ways: a first parameter annotated `AsyncSession` (injected by the
bridge), a parameter annotated `TaskContext` (injected by the task), and the payload: everything
else, validated with pydantic in strict JSON mode. Strict JSON mode is what the wire carries:
`"12"` is not an int and `true` is not a number, but an ISO string is a `datetime`, and a string
is a `UUID` or a `Decimal`, where the annotation asks for one. Unknown arguments are errors.

Or the payload is a versioned contract model (`@async_task(payload=Model)`, as the article
tasks are): the function then takes the one parameter annotated `Model`, and the arguments are
read by `articles_client.contract.parse_payload`, with the sender's contract version from the
message header and the canvas predecessors that contract accepts.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, Required

from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy.ext.asyncio import AsyncSession

# pydantic needs typing_extensions' TypedDict before Python 3.12.
from typing_extensions import TypedDict

from articles_client.contract import Payload, describe_validation, parse_payload
from articles_client.errors import InvalidPayload


@dataclass(frozen=True, slots=True)
class TaskSignature:
    """The shape of one `async def` task function."""

    task_name: str
    session: bool
    context: str | None
    fields: tuple[str, ...]
    adapter: TypeAdapter[dict[str, Any]] | None
    # Set when the payload is a contract model: the one payload parameter is `fields[0]`.
    model: type[Payload] | None = None

    def parse(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], sender_version: str | None = None
    ) -> dict[str, Any]:
        """The validated keyword arguments of one call; `InvalidPayload` names each problem.

        Positional arguments map onto the payload parameters in order, as the article tasks'
        contract does, so a client that sends only `args` works too. `sender_version` is the
        contract version the message was sent under; only a contract model reads it.
        """
        if self.model is not None:
            payload = parse_payload(
                self.model, self.task_name, args, kwargs, sender_version=sender_version
            )
            return {self.fields[0]: payload}
        assert self.adapter is not None  # set whenever model is not
        if len(args) > len(self.fields):
            raise InvalidPayload(
                f"{self.task_name} takes at most {len(self.fields)} positional argument(s) "
                f"({', '.join(self.fields) or 'none'}), got {len(args)}"
            )
        data = dict(zip(self.fields, args, strict=False))
        clash = sorted(set(data) & set(kwargs))
        if clash:
            raise InvalidPayload(
                f"{self.task_name} got {', '.join(clash)} both positionally and by name"
            )
        data.update(kwargs)
        try:
            return self.adapter.validate_json(self._to_json(data), strict=True)
        except ValidationError as exc:
            raise InvalidPayload(f"{self.task_name}: {describe_validation(exc)}") from None

    def _to_json(self, data: dict[str, Any]) -> bytes:
        # Back to JSON, so strict mode judges what the wire carried. kombu's JSON decoder turns
        # a Python sender's datetimes, UUIDs and decimals back into objects; this writes them as
        # the ISO strings any other sender would have sent.
        try:
            return to_json(data)
        except PydanticSerializationError:
            problems = [f"{key}: {why}" for key, why in _unserialisable(data)]
            raise InvalidPayload(f"{self.task_name}: {'; '.join(problems)}") from None


def read_signature(
    fn: Callable[..., Any],
    task_name: str,
    context_type: type,
    model: type[Payload] | None = None,
) -> TaskSignature:
    """Read `fn`'s parameters; raise `TypeError` at decoration time for what cannot work.

    With `model`, the payload is that contract model, taken by the one parameter annotated so.
    """
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise TypeError(
            f"{task_name}: cannot resolve the annotations of {fn.__qualname__}"
        ) from exc
    params = list(inspect.signature(fn).parameters.values())
    session = bool(params) and _is(hints.get(params[0].name), AsyncSession)
    context: str | None = None
    fields: dict[str, Any] = {}
    for index, param in enumerate(params):
        if session and index == 0:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{task_name}: *args and **kwargs cannot be validated; name each one")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{task_name}: arguments are passed by name; drop the `/`")
        hint = hints.get(param.name, inspect.Parameter.empty)
        if hint is inspect.Parameter.empty:
            raise TypeError(f"{task_name}: parameter {param.name!r} needs an annotation")
        if _is(hint, AsyncSession):
            raise TypeError(f"{task_name}: the AsyncSession must be the first parameter")
        if _is(hint, context_type):
            if context is not None:
                raise TypeError(f"{task_name}: only one {context_type.__name__} parameter")
            context = param.name
            continue
        required = param.default is inspect.Parameter.empty
        fields[param.name] = Required[hint] if required else NotRequired[hint]
    if model is not None:
        annotated = {name: hints[name] for name in fields}
        return _contract_signature(task_name, session, context, annotated, model)
    return TaskSignature(
        task_name=task_name,
        session=session,
        context=context,
        fields=tuple(fields),
        adapter=TypeAdapter(_payload_type(fn, fields)),
    )


def _contract_signature(
    task_name: str, session: bool, context: str | None, fields: dict[str, Any], model: type
) -> TaskSignature:
    if not (isinstance(model, type) and issubclass(model, Payload)):
        raise TypeError(f"{task_name}: payload= takes a contract model (a Payload subclass)")
    if len(fields) != 1 or not _is(next(iter(fields.values())), model):
        raise TypeError(
            f"{task_name}: with payload={model.__name__}, the function takes exactly one "
            f"payload parameter, annotated {model.__name__}"
        )
    return TaskSignature(
        task_name=task_name,
        session=session,
        context=context,
        fields=tuple(fields),
        adapter=None,
        model=model,
    )


def _unserialisable(data: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for key, value in data.items():
        try:
            to_json(value)
        except PydanticSerializationError as exc:
            # JSON can carry a lone surrogate escape, which decodes to a str UTF-8 refuses.
            surrogate = "surrogates not allowed" in str(exc)
            found.append((key, "must be valid UTF-8" if surrogate else "is not a JSON value"))
    return found


def _is(hint: Any, cls: type) -> bool:
    return isinstance(hint, type) and issubclass(hint, cls)


def _payload_type(fn: Callable[..., Any], fields: dict[str, Any]) -> Any:
    # A TypedDict, not a model: any parameter name is allowed (a model's would clash with its
    # own attributes, such as `json`), and an omitted argument takes the function's own default.
    payload = TypedDict(f"{fn.__name__}_payload", fields)  # type: ignore[misc]
    return with_config(ConfigDict(strict=True, extra="forbid"))(payload)
