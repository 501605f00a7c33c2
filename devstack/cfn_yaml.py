"""Load CloudFormation / SAM templates written in YAML, short-form intrinsic functions included.

``!Ref X`` becomes ``{"Ref": "X"}``, ``!GetAtt A.B`` becomes ``{"Fn::GetAtt": ["A", "B"]}``,
``!Condition C`` becomes ``{"Condition": "C"}`` and every other ``!Name arg`` becomes
``{"Fn::Name": arg}`` - the JSON form CloudFormation itself uses - so tests and the devstack read a
template as plain data.  Duplicate keys are an error (CloudFormation refuses them too) and so is
any tag not listed here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

# Short forms that map to {"Fn::<Name>": argument}.
FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Contains",
    "EachMemberEquals",
    "EachMemberIn",
    "Equals",
    "FindInMap",
    "ForEach",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "RefAll",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
    "ValueOf",
    "ValueOfAll",
)


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that knows CloudFormation's intrinsic tags and refuses duplicate keys."""


def _node_value(loader: CfnLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return _mapping(loader, node)
    raise yaml.constructor.ConstructorError(
        None, None, f"unexpected node {node!r}", node.start_mark
    )


def _mapping(loader: CfnLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"duplicate key {key!r}",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _ref(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
    return {"Ref": _node_value(loader, node)}


def _condition(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
    return {"Condition": _node_value(loader, node)}


def _get_att(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
    value = _node_value(loader, node)
    if isinstance(value, str):
        resource, sep, attribute = value.partition(".")
        if not (resource and sep and attribute):
            raise yaml.constructor.ConstructorError(
                None, None, f"!GetAtt {value!r} is not Resource.Attribute", node.start_mark
            )
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


def _function(name: str) -> Callable[[CfnLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
        return {f"Fn::{name}": _node_value(loader, node)}

    return construct


CfnLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
CfnLoader.add_constructor("!Ref", _ref)
CfnLoader.add_constructor("!Condition", _condition)
CfnLoader.add_constructor("!GetAtt", _get_att)
for _name in FN_TAGS:
    CfnLoader.add_constructor(f"!{_name}", _function(_name))


def loads(text: str) -> Any:
    """The template in ``text`` as plain data (dicts, lists, strings, numbers)."""
    return yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader


def load(path: str | Path) -> dict[str, Any]:
    """The template at ``path``; it must be a mapping."""
    document = loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a template is a mapping, not {type(document).__name__}")
    return document
