package dev.msakit.interop.edge;

import java.util.Map;

import dev.msakit.interop.common.DiscoveredServices;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.client.discovery.DiscoveryClient;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;

/** Spring Cloud Gateway routing /orders/** to lb://orders (the route is in application.yml). */
@SpringBootApplication
public class EdgeApp {
    public static void main(String[] args) {
        SpringApplication.run(EdgeApp.class, args);
    }

    @RestController
    public static class DiscoveryController {
        private final DiscoveryClient discovery;

        public DiscoveryController(DiscoveryClient discovery) {
            this.discovery = discovery;
        }

        @GetMapping("/discovery")
        public Map<String, Object> discovery() {
            return DiscoveredServices.of(discovery);
        }
    }
}
