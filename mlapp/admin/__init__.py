"""The admin: models and their versions, validated uploads, stage changes, "try it", charts,
and batch jobs. Django's admin autodiscovery imports this package, which registers them."""

from django.contrib import admin

from mlapp.admin.jobs import BatchJobAdmin
from mlapp.admin.models import MLModelAdmin
from mlapp.admin.versions import ModelVersionAdmin
from mlapp.models import BatchJob, MLModel, ModelVersion

admin.site.register(MLModel, MLModelAdmin)
admin.site.register(ModelVersion, ModelVersionAdmin)
admin.site.register(BatchJob, BatchJobAdmin)
