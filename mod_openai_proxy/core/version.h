/* The module's version: the upstream's User-Agent, the status page. */
#ifndef OAIP_VERSION_H
#define OAIP_VERSION_H

#define OAIP_VERSION "0.1.0"

#endif
