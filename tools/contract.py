"""The tool contract: what a tool declares and what it receives when it runs.

A tool is a Python function turned into a :class:`ToolSpec` by :func:`tool`. The spec
carries an input model built from the signature, MCP-style annotations plus
``irreversible``, and whether the tool takes a :class:`ToolContext` — the object that
carries the idempotency key the tool must forward to downstream APIs.

The registration rule: a tool that is not declared ``read_only=True`` may have a side
effect, so it must accept ``ctx: ToolContext``; otherwise it could never forward its key
and a retry could repeat the effect. Breaking the rule raises
:class:`~agentflow.errors.ToolRegistrationError` at decoration time.

LangChain tools are adapted with :func:`from_langchain`. They cannot take ``ctx`` as a
parameter, so the adapter passes the context in the run config instead:
``config["metadata"]["idempotency_key"]`` (plus ``thread_id``, ``attempt``, ``step``).
Whether the tool reads and forwards it cannot be checked, so an adapted tool has
``forwards_key=False`` unless the caller says otherwise; with that, a lease that expired
mid-call always goes to a human instead of being re-run (the safe side of the
unknown-outcome rule).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from agentflow.consequence import ToolAnnotations
from agentflow.errors import ToolError, ToolRegistrationError
from agentflow.tools.keys import action_digest

__all__ = ["ToolContext", "ToolRegistry", "ToolSpec", "from_langchain", "tool"]


@dataclass(frozen=True)
class ToolContext:
    """What a tool with side effects receives besides its arguments."""

    idempotency_key: str | None
    """Derived key of this call; forward it to downstream APIs (None for safe calls)."""
    thread_id: str
    """The LangGraph thread the call belongs to."""
    attempt: int
    """1 for the first run under this key, higher for retries that reuse the key."""
    step: int
    """Plan step the call belongs to (part of the key)."""


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool: schema, annotations, and the callable behind it."""

    name: str
    """Unique tool name (what the planner writes in a call)."""
    description: str
    """What the tool does, for the planner and the MCP definition."""
    input_model: type[BaseModel]
    """Pydantic model of the arguments (the signature without ``ctx``)."""
    fn: Callable[..., Any]
    """The function itself; sync or async."""
    annotations: ToolAnnotations | None = None
    """Declared MCP hints plus ``irreversible``; None when nothing was declared."""
    accepts_context: bool = False
    """True when ``fn`` takes the :class:`ToolContext` (as ``ctx_param``)."""
    forwards_key: bool = False
    """The tool forwards the key downstream, so re-running it under the same key is safe."""
    ctx_param: str = "ctx"
    """Name of the parameter that receives the context."""
    input_schema: dict[str, Any] = field(default_factory=dict)
    """JSON schema of the arguments; defaults to the input model's schema."""
    afn: Callable[..., Awaitable[Any]] | None = None
    """Native async variant of ``fn`` (adapted LangChain tools), preferred by async callers."""

    @property
    def is_async(self) -> bool:
        """True when ``fn`` is a coroutine function."""
        return inspect.iscoroutinefunction(self.fn)

    def definition(self) -> dict[str, Any]:
        """The MCP-style definition: name, description, inputSchema, annotations."""
        hints = (
            self.annotations.model_dump(by_alias=True, exclude_none=True)
            if self.annotations is not None
            else {}
        )
        schema = self.input_schema or self.input_model.model_json_schema()
        return {
            "name": self.name,
            "description": self.description,
            "inputSchema": schema,
            "annotations": hints,
        }

    def parse_args(self, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate ``args``; return (keyword arguments for the call, their JSON form).

        The JSON form is what keys and fingerprints are computed from, so ``{"n": "5"}``
        and ``{"n": 5}`` for an ``int`` parameter give the same key.
        """
        try:
            model = self.input_model.model_validate(args)
        except ValidationError as exc:
            raise ToolError(
                f"invalid arguments for tool {self.name!r}: {exc}",
                hint=f"call it with arguments matching {self.name}.definition()['inputSchema']",
            ) from exc
        kwargs = {name: getattr(model, name) for name in type(model).model_fields}
        kwargs.update(model.model_extra or {})
        return kwargs, model.model_dump(mode="json")

    def validate_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Validated keyword arguments; raises :class:`ToolError` saying what is wrong."""
        return self.parse_args(args)[0]

    def digest(self, args: dict[str, Any]) -> str:
        """The action digest of a call with ``args``: what the executor compares grants and
        kept classes with (:func:`agentflow.tools.keys.action_digest` of the canonical JSON form)."""
        return action_digest(self.name, self.parse_args(args)[1])

    def bind(self, kwargs: dict[str, Any], ctx: ToolContext | None) -> dict[str, Any]:
        """Keyword arguments for ``fn``: ``kwargs`` plus the context when it takes one."""
        if self.accepts_context:
            return {**kwargs, self.ctx_param: ctx}
        return dict(kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no guard)."""
        return self.fn(*args, **kwargs)


def _annotations(**hints: bool | None) -> ToolAnnotations | None:
    """Annotations from the decorator's keyword hints; None when none was given."""
    if all(v is None for v in hints.values()):
        return None
    return ToolAnnotations(**hints)  # type: ignore[arg-type]


def _check_declaration(name: str, annotations: ToolAnnotations | None) -> None:
    """Refuse hints that contradict each other."""
    if annotations is None or not annotations.read_only:
        return
    if annotations.destructive or annotations.irreversible:
        raise ToolRegistrationError(
            f"tool {name!r} is declared read_only and also destructive/irreversible",
            hint="a read-only tool changes nothing; drop read_only=True or the other hint",
        )


def _input_model(
    name: str, fn: Callable[..., Any], localns: dict[str, Any] | None = None
) -> tuple[type[BaseModel], str | None]:
    """Build the argument model from the signature; return it and the ctx parameter name."""
    signature = inspect.signature(fn)
    try:
        # localns: the decorating scope, so types defined next to a nested tool resolve.
        hints = get_type_hints(fn, localns=localns, include_extras=True)
    except (NameError, TypeError) as exc:
        raise ToolRegistrationError(
            f"cannot resolve the type hints of tool {name!r}: {exc}",
            hint="import every type used in the tool's signature at module level",
        ) from exc
    fields: dict[str, Any] = {}
    ctx_param: str | None = None
    for pname, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ToolRegistrationError(
                f"tool {name!r} has parameter {pname!r} of kind {param.kind.description}",
                hint="tools take named parameters only (no *args, **kwargs or positional-only)",
            )
        annotation = hints.get(pname, Any)
        if pname == "ctx" or annotation is ToolContext:
            ctx_param = pname
            continue
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, default)
    model = create_model(  # type: ignore[call-overload]
        f"{name}_input", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model, ctx_param


def _make_spec(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    annotations: ToolAnnotations | None,
    forwards_key: bool,
    localns: dict[str, Any] | None = None,
) -> ToolSpec:
    """Build and check a spec for a plain function."""
    tool_name = name or fn.__name__
    _check_declaration(tool_name, annotations)
    model, ctx_param = _input_model(tool_name, fn, localns)
    read_only = bool(annotations and annotations.read_only)
    if not read_only and ctx_param is None:
        raise ToolRegistrationError(
            f"tool {tool_name!r} is not declared read_only=True but takes no ToolContext",
            hint=(
                f"add a parameter `ctx: ToolContext` to {fn.__name__}() and forward "
                "ctx.idempotency_key to the API it calls, or declare @tool(read_only=True) "
                "if it changes nothing"
            ),
        )
    if forwards_key and ctx_param is None:
        raise ToolRegistrationError(
            f"tool {tool_name!r} says forwards_key=True but takes no ToolContext",
            hint=f"add a parameter `ctx: ToolContext` to {fn.__name__}()",
        )
    return ToolSpec(
        name=tool_name,
        description=description or inspect.getdoc(fn) or "",
        input_model=model,
        fn=fn,
        annotations=annotations,
        accepts_context=ctx_param is not None,
        forwards_key=forwards_key,
        ctx_param=ctx_param or "ctx",
    )


@overload
def tool(fn: Callable[..., Any], /) -> ToolSpec: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
    irreversible: bool | None = None,
    forwards_key: bool = False,
) -> Callable[[Callable[..., Any]], ToolSpec]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
    irreversible: bool | None = None,
    forwards_key: bool = False,
) -> ToolSpec | Callable[[Callable[..., Any]], ToolSpec]:
    """Declare a tool: ``@tool`` or ``@tool(read_only=True, ...)``.

    ``description`` defaults to the docstring. A tool not declared ``read_only=True``
    must take ``ctx: ToolContext``; ``forwards_key=True`` says it passes
    ``ctx.idempotency_key`` to the downstream API (so an interrupted run may be retried
    under the same key).
    """
    annotations = _annotations(
        read_only=read_only,
        destructive=destructive,
        idempotent=idempotent,
        open_world=open_world,
        irreversible=irreversible,
    )
    caller_locals = dict(sys._getframe(1).f_locals)

    def decorate(f: Callable[..., Any]) -> ToolSpec:
        return _make_spec(
            f,
            name=name,
            description=description,
            annotations=annotations,
            forwards_key=forwards_key,
            localns=caller_locals,
        )

    return decorate(fn) if fn is not None else decorate


def from_langchain(
    lc_tool: Any,
    *,
    read_only: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
    irreversible: bool | None = None,
    forwards_key: bool = False,
) -> ToolSpec:
    """Adapt a ``langchain_core.tools.BaseTool``; the context travels in the run config.

    The tool is invoked with ``config={"metadata": {"idempotency_key": ..., "thread_id":
    ..., "attempt": ..., "step": ...}}``. Pass ``forwards_key=True`` only if the tool reads
    that key and forwards it downstream.
    """
    from langchain_core.tools import BaseTool

    if not isinstance(lc_tool, BaseTool):
        raise ToolRegistrationError(
            f"from_langchain() needs a langchain_core BaseTool, got {type(lc_tool).__name__}",
            hint="wrap plain functions with @tool instead",
        )
    annotations = _annotations(
        read_only=read_only,
        destructive=destructive,
        idempotent=idempotent,
        open_world=open_world,
        irreversible=irreversible,
    )
    _check_declaration(lc_tool.name, annotations)
    schema = lc_tool.tool_call_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        model: type[BaseModel] = schema
        json_schema = schema.model_json_schema()
    elif isinstance(schema, dict):
        # A JSON-schema tool: LangChain validates on invoke; we only pass the dict through.
        model = create_model(f"{lc_tool.name}_input", __config__=ConfigDict(extra="allow"))
        json_schema = dict(schema)
    else:
        raise ToolRegistrationError(
            f"LangChain tool {lc_tool.name!r} has an unsupported schema {schema!r}",
            hint="give it a pydantic args_schema",
        )

    def _config(ctx: ToolContext | None) -> dict[str, Any]:
        meta = {} if ctx is None else dataclasses.asdict(ctx)
        return {"metadata": meta}

    def run(ctx: ToolContext | None = None, **kwargs: Any) -> Any:
        return lc_tool.invoke(kwargs, config=_config(ctx))  # type: ignore[arg-type]

    async def arun(ctx: ToolContext | None = None, **kwargs: Any) -> Any:
        return await lc_tool.ainvoke(kwargs, config=_config(ctx))  # type: ignore[arg-type]

    return ToolSpec(
        name=lc_tool.name,
        description=lc_tool.description,
        input_model=model,
        fn=run,
        afn=arun,
        annotations=annotations,
        accepts_context=True,
        forwards_key=forwards_key,
        input_schema=json_schema,
    )


class ToolRegistry:
    """Tools by name; duplicate names are refused."""

    def __init__(self, tools: Iterable[ToolSpec] = ()) -> None:
        self._tools: dict[str, ToolSpec] = {}
        for spec in tools:
            self.add(spec)

    def add(self, spec: ToolSpec) -> ToolSpec:
        """Register ``spec``; raises :class:`ToolRegistrationError` on a duplicate name."""
        if not isinstance(spec, ToolSpec):
            raise ToolRegistrationError(
                f"{spec!r} is not a ToolSpec",
                hint="decorate the function with @tool or adapt it with from_langchain()",
            )
        if spec.name in self._tools:
            raise ToolRegistrationError(
                f"a tool named {spec.name!r} is already registered",
                hint="give one of them another name: @tool(name=...)",
            )
        self._tools[spec.name] = spec
        return spec

    def get(self, name: str) -> ToolSpec:
        """The tool called ``name``; raises :class:`ToolError` if there is none."""
        try:
            return self._tools[name]
        except KeyError:
            raise ToolError(
                f"no tool named {name!r}",
                hint=f"registered tools: {', '.join(sorted(self._tools)) or '(none)'}",
            ) from None

    def definitions(self) -> list[dict[str, Any]]:
        """MCP-style definitions of every tool, in registration order."""
        return [spec.definition() for spec in self._tools.values()]

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)
