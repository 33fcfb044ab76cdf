"""The execute record's schema check refuses records that break the schema."""

from __future__ import annotations

import fastjsonschema
import pytest

from cjlib.workflow.artefacts import validate_assessment_run


def test_a_record_missing_its_sections_is_refused():
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="bt_fit"):
        validate_assessment_run({"schema_version": "1.0"})


def test_a_wrong_schema_version_is_refused():
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validate_assessment_run({"schema_version": "2.0"})
