package dev.msakit.interop.orders;

import java.util.Map;

import dev.msakit.interop.common.DiscoveredServices;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.client.discovery.DiscoveryClient;
import org.springframework.cloud.client.loadbalancer.LoadBalanced;
import org.springframework.cloud.openfeign.EnableFeignClients;
import org.springframework.cloud.openfeign.FeignClient;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Primary;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.client.RestClient;

/** A caller: reaches `inventory` by name through a load-balanced RestClient and through OpenFeign. */
@SpringBootApplication
@EnableFeignClients
public class OrdersApp {
    public static void main(String[] args) {
        SpringApplication.run(OrdersApp.class, args);
    }

    /** The builder everything else gets, the Eureka client's own transport included: not balanced. */
    @Bean
    @Primary
    RestClient.Builder plainRestClientBuilder() {
        return RestClient.builder();
    }

    /** The builder whose clients resolve `http://inventory/...` through Spring Cloud LoadBalancer. */
    @Bean
    @LoadBalanced
    RestClient.Builder balancedRestClientBuilder() {
        return RestClient.builder();
    }

    /** Inventory's API as an OpenFeign interface, resolved by service name. */
    @FeignClient(name = "inventory")
    public interface InventoryClient {
        @GetMapping("/items")
        Map<String, Object> items();
    }

    @RestController
    public static class OrdersController {
        private final RestClient inventory;
        private final InventoryClient feign;
        private final DiscoveryClient discovery;
        private final String instanceId;

        public OrdersController(@LoadBalanced RestClient.Builder balanced, InventoryClient feign,
                DiscoveryClient discovery, @Value("${eureka.instance.instance-id}") String instanceId) {
            this.inventory = balanced.baseUrl("http://inventory").build();
            this.feign = feign;
            this.discovery = discovery;
            this.instanceId = instanceId;
        }

        @GetMapping("/orders/via-rest")
        public Map<String, Object> viaRest() {
            return inventory.get().uri("/items").retrieve().body(Map.class);
        }

        @GetMapping("/orders/via-feign")
        public Map<String, Object> viaFeign() {
            return feign.items();
        }

        @GetMapping("/orders/whoami")
        public Map<String, Object> whoami() {
            return Map.of("instance", instanceId);
        }

        @GetMapping("/discovery")
        public Map<String, Object> discovery() {
            return DiscoveredServices.of(discovery);
        }
    }
}
