# The queue file of loom's capacity scheduler, after YARN's
# CapacityScheduler: `loom rm --queues FILE` (or `loom cluster up
# --queues FILE`); after an edit, `loom admin refresh-queues` reloads it,
# and a file that does not parse, or drops a queue that has live
# applications, changes nothing. Without one, the RM runs the one queue
# root.default. Every queue is a block under "root"; applications go to
# the leaves (`loom run --queue etl`, `loom dshell --queue dev`).
#
# A queue grows into idle capacity up to its maximum; when a queue below
# its capacity has work waiting, containers of queues over theirs are
# taken back (preemption, youngest first; the AM is warned
# --preemption-grace before the kill).
#
# capacity          a percentage of the parent ("70%"), a weight among
#                   the siblings ("3w"), or a resource
#                   ("[memory=20480,vcores=10]"); siblings use one kind,
#                   and percentages of siblings add up to 100%.
# maximum_capacity  how far a queue may grow into idle capacity
#                   (default: its parent's); a percentage or a resource.
# max_am_share      the share of its maximum AM containers may hold (50%).
# minimum_user_limit_percent, user_limit_factor
#                   YARN's user limits of a leaf (100, 1): a user holds
#                   at least that share of the queue when others want
#                   it, and at most factor x its capacity (with 1, one
#                   user cannot take the queue past its capacity).
# max_applications  running and pending applications of a leaf (10000).
# ordering          "fifo" or "fair" within a leaf (fifo).
# acl_submit, acl_administer
#                   users and "group:NAME"s, "*" for anyone; a queue's
#                   add to its parent's. A queue whose path lists no
#                   submitter is open to every user. Administrators may
#                   submit, and kill or move others' applications;
#                   cluster admins (--admins) administer every queue.
# accessible_node_labels
#                   the node labels (`nm --labels`) whose nodes the
#                   queue's applications may ask for (`loom run
#                   --tm-node-label gpu`), beside its parent's; "*" for
#                   every label. The settings above are of the nodes
#                   without labels, the default partition.
# label "NAME" { capacity, maximum_capacity }
#                   the queue's share of the partition of a label it may
#                   use, as percentages of its parent's there (YARN's
#                   accessible-node-labels.NAME.capacity); root has all
#                   of every partition. Without a block a queue is
#                   guaranteed none of it and may grow to its parent's
#                   maximum there. Siblings' label capacities add up to
#                   100% or are all left out; each partition is
#                   scheduled, and preempted, on its own.

queue "root" {
  acl_administer = ["group:admins"]

  queue "prod" {
    capacity               = "70%"
    maximum_capacity       = "100%"
    acl_submit             = ["group:eng"]
    accessible_node_labels = ["gpu"]
    label "gpu" {
      capacity = "100%"
    }

    queue "etl" {
      capacity                   = "60%"
      minimum_user_limit_percent = 25
      user_limit_factor          = 2
      ordering                   = "fair"
      label "gpu" {
        capacity = "80%"
      }
    }
    queue "serving" {
      capacity     = "40%"
      max_am_share = "20%"
      label "gpu" {
        capacity         = "20%"
        maximum_capacity = "50%"
      }
    }
  }

  queue "dev" {
    capacity          = "30%"
    maximum_capacity  = "60%"
    user_limit_factor = 2
    max_applications  = 200
    acl_submit        = ["*"]
  }
}
