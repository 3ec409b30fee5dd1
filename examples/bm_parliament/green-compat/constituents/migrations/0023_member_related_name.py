# Release green: the reverse accessor of BMParliamentMember.user is renamed
# from fahanie_cares_member to bm_parliament_member. A related_name lives in
# Python only: this migration changes Django's model state and runs no SQL
# (`python3 manage.py sqlmigrate constituents 0023` prints no statement).

from django.conf import settings
from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        ("constituents", "0022_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="bmparliamentmember",
            name="user",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="bm_parliament_member",
                to=settings.AUTH_USER_MODEL),
        ),
    ]
