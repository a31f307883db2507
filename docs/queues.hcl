# The queue file of loom's capacity scheduler, after YARN's
# CapacityScheduler (parsed and checked by rm/scheduler's
# ParseQueueFile; the RM does not take one yet and runs the one queue
# root.default). Every queue is a block under "root"; applications go to
# the leaves.
#
# capacity          a percentage of the parent ("70%"), a weight among
#                   the siblings ("3w"), or a resource
#                   ("[memory=20480,vcores=10]"); siblings use one kind,
#                   and percentages of siblings add up to 100%.
# maximum_capacity  how far a queue may grow into idle capacity
#                   (default: its parent's); a percentage or a resource.
# max_am_share      the share of its maximum AM containers may hold (50%).
# minimum_user_limit_percent, user_limit_factor
#                   YARN's user limits of a leaf (100, 1).
# max_applications  running and pending applications of a leaf (10000).
# ordering          "fifo" or "fair" within a leaf (fifo).
# acl_submit, acl_administer
#                   users and "group:NAME"s, "*" for anyone; a queue's
#                   add to its parent's.

queue "root" {
  acl_administer = ["group:admins"]

  queue "prod" {
    capacity         = "70%"
    maximum_capacity = "100%"
    acl_submit       = ["group:eng"]

    queue "etl" {
      capacity                   = "60%"
      minimum_user_limit_percent = 25
      user_limit_factor          = 2
      ordering                   = "fair"
    }
    queue "serving" {
      capacity     = "40%"
      max_am_share = "20%"
    }
  }

  queue "dev" {
    capacity         = "30%"
    maximum_capacity = "60%"
    max_applications = 200
    acl_submit       = ["*"]
  }
}
