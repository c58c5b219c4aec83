"""The admin pages (not Django's admin site): namespaces with their members
and keys, people, and the audit trail.

System admins manage everything. An admin of a namespace manages that
namespace's members and keys, and reads its audit trail. A namespace the
person can't see answers 404; one they can see but not manage, 403. Every
change goes through the accounts services with the person as its Actor.
"""
