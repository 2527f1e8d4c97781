/* Shared by the httpd glue files: the module record and its log index. */
#ifndef MOD_OPENAI_PROXY_H
#define MOD_OPENAI_PROXY_H

#include <httpd.h>
#include <http_config.h>
#include <http_log.h>

extern module AP_MODULE_DECLARE_DATA openai_proxy_module;

/* AP_DECLARE_MODULE declares the log index in mod_openai_proxy.c */
#ifndef OAIP_MODULE_RECORD_FILE
APLOG_USE_MODULE(openai_proxy);
#endif

#define OAIP_HANDLER_NAME "openai-proxy"
#define OAIP_VERSION "0.1.0"

#endif
