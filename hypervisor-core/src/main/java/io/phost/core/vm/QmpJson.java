package io.phost.core.vm;

import io.phost.core.text.Json;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * QMP's JSON: one object per line, read and written with the project's one JSON code ({@link Json}); a
 * malformed message is a {@link QmpException} (MALFORMED with the offset), since it comes from QEMU.
 */
public final class QmpJson {
    private QmpJson() {}

    public static Object parse(String text) {
        try {
            return Json.parse(text);
        } catch (Json.MalformedException e) {
            throw new QmpException(QmpException.Reason.MALFORMED, e.offset(), e.what());
        }
    }

    /** Parses a QMP message: must be a JSON object. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> parseObject(String text) {
        Object v = parse(text);
        if (!(v instanceof Map<?, ?>)) {
            throw new QmpException(QmpException.Reason.MALFORMED, 0, "a QMP message must be a JSON object");
        }
        return (Map<String, Object>) v;
    }

    /** Writes a command: {"execute":NAME[,"arguments":{...}],"id":ID}. */
    public static String command(String name, Map<String, ?> arguments, long id) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("execute", name);
        if (arguments != null && !arguments.isEmpty()) {
            m.put("arguments", arguments);
        }
        m.put("id", id);
        return Json.write(m);
    }
}
