# The portal's constituents app as of release blue. Its history before this
# (0001-0021) is squashed into one initial migration, so that the next one is
# 0023 as in the deployment plan.

from django.conf import settings
from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="BMParliamentMember",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True,
                                        serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("user", models.OneToOneField(
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name="fahanie_cares_member",
                    to=settings.AUTH_USER_MODEL)),
            ],
        ),
    ]
