/* The process's checkpoint uploader (exec_upload.c): subtasks hand it their finished
 * snapshots (the end of the synchronous part) and go on processing; its thread copies each
 * into checkpoint storage (checkpoint_store.h) and passes the acknowledgement on. */
#ifndef KP_EXEC_UPLOAD_H
#define KP_EXEC_UPLOAD_H

#include "checkpoint.h"
#include "checkpoint_store.h"

typedef struct kp_uploader kp_uploader;

/* An uploader into `store` that passes acknowledgements and failed uploads to `hooks`
 * (which must stay valid until kp_uploader_free). threaded: one thread of its own, else
 * kp_uploader_push uploads on the caller's thread (the deterministic scheduler). NULL if
 * out of memory or no thread could start. @locality the running thread */
kp_uploader *kp_uploader_new(kp_ckpt_store *store, const kp_ckpt_hooks *hooks, int threaded);

/* Takes snap over: it is uploaded, then acknowledged (or declined when the upload fails)
 * through the hooks, then freed. @locality any thread (subtask threads) */
void kp_uploader_push(kp_uploader *u, kp_snapshot *snap);

/* Uploads what is queued, stops the thread and frees u (NULL is fine). discard: drop what is
 * queued instead (a failed or cancelled run). @locality the running thread */
void kp_uploader_free(kp_uploader *u, int discard);

#endif
