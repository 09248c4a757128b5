/** The config's JSON Schema, generated from the zod schema (published as config/faultline.schema.json). */
import { zodToJsonSchema } from 'zod-to-json-schema';
import { configSchema } from './schema.js';
export function configJsonSchema() {
    return zodToJsonSchema(configSchema, {
        name: 'FaultlineConfig',
        $refStrategy: 'none',
        effectStrategy: 'input',
    });
}
//# sourceMappingURL=json-schema.js.map