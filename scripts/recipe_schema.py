"""Print the recipe's JSON Schema as pretty JSON: the copy in docs/recipe.md is this
output, and tests/test_recipe.py fails when the two differ.

    python scripts/recipe_schema.py
"""
import json

from composer.recipe import recipe_json_schema

if __name__ == "__main__":
    print(json.dumps(recipe_json_schema(), indent=2, ensure_ascii=False))
