/* The module record and its log index, for the files that talk to httpd
 * (LogLevel openai_proxy:debug). Nothing else belongs here. */
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

#endif
