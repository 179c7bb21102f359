"""The host project's own table: measured iris flowers, scored by a batch job."""

from django.db import models


class Flower(models.Model):
    """One measured flower (cm) and the species a botanist named."""

    sepal_length = models.FloatField()
    sepal_width = models.FloatField()
    petal_length = models.FloatField()
    petal_width = models.FloatField()
    species = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"flower {self.pk}"

    @property
    def measurements(self) -> list[float]:
        return [self.sepal_length, self.sepal_width, self.petal_length, self.petal_width]
