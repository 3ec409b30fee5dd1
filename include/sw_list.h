/* Intrusive doubly linked lists and container_of. An object embeds an
 * sw_list_t per list it can be on; a list head is an sw_list_t pointing at
 * itself when empty. Removal is O(1) and idempotent. */
#ifndef SW_LIST_H
#define SW_LIST_H

#include <stddef.h>

#define sw_container_of(ptr, type, member) \
  ((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct sw_list_s {
  struct sw_list_s *prev;
  struct sw_list_s *next;
} sw_list_t;

static inline void sw_list_init(sw_list_t *l) {
  l->prev = l;
  l->next = l;
}

static inline int sw_list_empty(const sw_list_t *l) {
  return l->next == l;
}

/* Whether a node is on some list (nodes are kept self-linked when off). */
static inline int sw_list_linked(const sw_list_t *n) {
  return n->next != n && n->next != NULL;
}

static inline void sw_list_append(sw_list_t *head, sw_list_t *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}

static inline void sw_list_remove(sw_list_t *n) {
  if (n->next == NULL || n->next == n)
    return;
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n;
  n->next = n;
}

#endif
