"""Per-sample recipes, one module per pretext task: pure numpy/OpenCV, testable without Ray."""

from pipelines.recipes import color, exemplar, jigsaw, motion, relpos, rotation
from pipelines.recipes.base import Recipe, RecipeOutput

RECIPES: dict[str, Recipe] = {
    "relpos": relpos.RECIPE,
    "color": color.RECIPE,
    "exemplar": exemplar.RECIPE,
    "motion": motion.RECIPE,
    "rotation": rotation.RECIPE,
    "jigsaw": jigsaw.RECIPE,
}

__all__ = ["RECIPES", "Recipe", "RecipeOutput"]
