"""Every serving-relevant change moves the model's change marker, whatever path made it.

A model's stage, handler, serving config or name changing, a production version appearing,
a version or a model deleted: each moves :class:`~mlapp.models.ChangeMarker` in the same
transaction (other processes then reload within ``POLL_INTERVAL``), and once the transaction
commits, :data:`serving_changed` tells this process (the registry listens). The admin, the
APIs, ``register_model``, the shell and a host project's own code all save through the ORM,
so none of them has to remember to call anything. Queryset ``update()`` bypasses these
receivers; mlapp itself uses it only for rows whose change a ``save()`` in the same
transaction already announces (the archived predecessor of a promoted version). Rows saved
raw (``loaddata``, deserialized fixtures) announce nothing: their markers come with them.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_init, post_save
from django.dispatch import Signal, receiver

from mlapp.models import ChangeMarker, MLModel, ModelVersion

#: Sent once the change is committed, with ``model_name``, in the process that made it.
serving_changed = Signal()

#: The fields of each table that change what a model serves.
WATCHED: dict[type, tuple[str, ...]] = {
    MLModel: ("name", "handler", "serving", "monitoring"),
    ModelVersion: ("stage",),
}
_SNAPSHOT = "_mlapp_served"


def _values(instance: Any) -> tuple[Any, ...]:
    # __dict__, not getattr: a deferred field must not cost a query here.
    return tuple(instance.__dict__.get(name) for name in WATCHED[type(instance)])


def announce(model_name: str) -> None:
    """Move the marker of ``model_name`` now; tell this process once the change commits."""
    ChangeMarker.objects.bump(model_name)
    transaction.on_commit(lambda: serving_changed.send(sender=ChangeMarker, model_name=model_name))


@receiver(post_init, sender=MLModel)
@receiver(post_init, sender=ModelVersion)
def _remember(sender: type, instance: Any, **kwargs: Any) -> None:
    setattr(instance, _SNAPSHOT, _values(instance))


@receiver(post_save, sender=MLModel)
def _model_saved(sender: type, instance: MLModel, created: bool, raw: bool, **kwargs: Any) -> None:
    before = getattr(instance, _SNAPSHOT)
    now = _values(instance)
    setattr(instance, _SNAPSHOT, now)
    if raw or created or before == now:
        return
    if before[0] is not None and before[0] != instance.name:
        announce(before[0])  # renamed: the old name stops serving
    announce(instance.name)


@receiver(post_save, sender=ModelVersion)
def _version_saved(
    sender: type, instance: ModelVersion, created: bool, raw: bool, **kwargs: Any
) -> None:
    before = getattr(instance, _SNAPSHOT)
    now = _values(instance)
    setattr(instance, _SNAPSHOT, now)
    changed = instance.stage == ModelVersion.Stage.PRODUCTION if created else before != now
    if changed and not raw:
        announce(instance.model.name)


@receiver(post_delete, sender=MLModel)
def _model_deleted(sender: type, instance: MLModel, **kwargs: Any) -> None:
    announce(instance.name)


@receiver(post_delete, sender=ModelVersion)
def _version_deleted(sender: type, instance: ModelVersion, **kwargs: Any) -> None:
    # Deleted with its model, the model's own receiver announces it (its row may be gone).
    name = MLModel.objects.filter(pk=instance.model_id).values_list("name", flat=True).first()
    if name is not None:
        announce(name)
