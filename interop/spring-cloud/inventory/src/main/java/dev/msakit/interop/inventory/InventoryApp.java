package dev.msakit.interop.inventory;

import java.util.LinkedHashMap;
import java.util.Map;

import dev.msakit.interop.common.DiscoveredServices;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.client.discovery.DiscoveryClient;
import org.springframework.cloud.context.config.annotation.RefreshScope;
import org.springframework.stereotype.Component;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;

/** A service that Java callers reach by name: answers its instance id and values from its config. */
@SpringBootApplication
public class InventoryApp {
    public static void main(String[] args) {
        SpringApplication.run(InventoryApp.class, args);
    }

    /**
     * The values this app reads from the config server, re-read on POST /actuator/refresh. Read
     * through methods: callers hold a refresh-scope proxy, whose own fields stay empty.
     */
    @Component
    @RefreshScope
    public static class InventorySettings {
        @Value("${inventory.greeting:unset}") private String greeting;
        @Value("${inventory.owner:unset}") private String owner;
        @Value("${shared.region:unset}") private String region;
        @Value("${inventory.secret:unset}") private String secret;

        public Map<String, Object> values() {
            Map<String, Object> values = new LinkedHashMap<>();
            values.put("greeting", greeting);
            values.put("owner", owner);
            values.put("region", region);
            values.put("secret", secret);
            return values;
        }
    }

    @RestController
    public static class ItemsController {
        private final InventorySettings settings;
        private final DiscoveryClient discovery;
        private final String instanceId;

        public ItemsController(InventorySettings settings, DiscoveryClient discovery,
                @Value("${eureka.instance.instance-id}") String instanceId) {
            this.settings = settings;
            this.discovery = discovery;
            this.instanceId = instanceId;
        }

        @GetMapping("/items")
        public Map<String, Object> items() {
            Map<String, Object> body = new LinkedHashMap<>();
            body.put("instance", instanceId);
            body.putAll(settings.values());
            return body;
        }

        @GetMapping("/discovery")
        public Map<String, Object> discovery() {
            return DiscoveredServices.of(discovery);
        }
    }
}
