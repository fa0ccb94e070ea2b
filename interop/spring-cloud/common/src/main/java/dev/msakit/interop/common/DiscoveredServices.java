package dev.msakit.interop.common;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.springframework.cloud.client.ServiceInstance;
import org.springframework.cloud.client.discovery.DiscoveryClient;

/** What Spring's DiscoveryClient says, as JSON: every service and, per service, its instances. */
public final class DiscoveredServices {
    private DiscoveredServices() {
    }

    public static Map<String, Object> of(DiscoveryClient discovery) {
        Map<String, Object> services = new LinkedHashMap<>();
        for (String service : discovery.getServices()) {
            List<Map<String, Object>> instances = discovery.getInstances(service).stream()
                    .map(DiscoveredServices::describe).toList();
            services.put(service, instances);
        }
        return services;
    }

    private static Map<String, Object> describe(ServiceInstance instance) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("instanceId", instance.getInstanceId());
        body.put("host", instance.getHost());
        body.put("port", instance.getPort());
        body.put("metadata", instance.getMetadata());
        return body;
    }
}
