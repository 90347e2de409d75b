using System;
using System.Buffers;
using System.IO;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Llama.Compiled.Server.Api;

/// <summary>A request the server answers with an OpenAI-style error object instead of a result.</summary>
internal sealed class ApiException(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type ?? DefaultType(status);

    public static ApiException BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);

    public static ApiException NotSupported(string param) =>
        new(400, $"'{param}' is not supported by this server.", param, "unsupported_parameter");

    private static string DefaultType(int status) => status switch
    {
        401 => "invalid_request_error",
        404 => "invalid_request_error",
        429 => "rate_limit_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };
}

/// <summary>Reading requests and writing responses with ServerJsonContext only.</summary>
internal static class Http
{
    /// <summary>
    /// The body as <typeparamref name="T"/>. Malformed JSON, a value of the wrong type or an empty body become a 400
    /// naming the field (OpenAI's <c>param</c>), never a 500.
    /// </summary>
    public static async Task<T> ReadJsonAsync<T>(HttpContext context, JsonTypeInfo<T> typeInfo)
        where T : class
    {
        T? value;
        try
        {
            value = await JsonSerializer.DeserializeAsync(context.Request.Body, typeInfo, context.RequestAborted);
        }
        catch (JsonException e)
        {
            string? param = ParamOf(e.Path);
            string message = param is not null && e.Message.Contains("could not be converted", StringComparison.Ordinal)
                ? $"Invalid type for '{param}'."
                : "We could not parse the JSON body of your request: " + FirstSentence(e.Message);
            throw ApiException.BadRequest(message, param, "invalid_json");
        }
        catch (BadHttpRequestException e)
        {
            throw new ApiException(e.StatusCode, e.Message);
        }
        return value ?? throw ApiException.BadRequest("The request body must be a JSON object.", code: "invalid_json");
    }

    /// <summary>"$.messages[0].content" → "messages[0].content"; null for the root.</summary>
    private static string? ParamOf(string? path) =>
        path is null || path == "$" ? null : path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path;

    private static string FirstSentence(string message)
    {
        int end = message.IndexOf(" Path:", StringComparison.Ordinal);
        if (end < 0)
            end = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        return (end < 0 ? message : message[..end]).Trim();
    }

    public static async Task WriteJsonAsync<T>(HttpContext context, T value, JsonTypeInfo<T> typeInfo, int status = StatusCodes.Status200OK)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, value, typeInfo, context.RequestAborted);
    }

    public static Task WriteErrorAsync(HttpContext context, ApiException error)
    {
        if (error.Status == StatusCodes.Status429TooManyRequests)
            context.Response.Headers.RetryAfter = "1";
        var body = new ErrorResponse { Error = new ErrorBody { Message = error.Message, Type = error.Type, Param = error.Param, Code = error.Code } };
        return WriteJsonAsync(context, body, ServerJsonContext.Wire.ErrorResponse, error.Status);
    }
}

/// <summary>Server-sent events: <c>data: {json}\n\n</c>, flushed one by one, ended by <c>data: [DONE]</c>.</summary>
internal sealed class ServerSentEvents : IDisposable
{
    private readonly HttpContext _context;
    private readonly Utf8JsonWriter _json;

    public ServerSentEvents(HttpContext context)
    {
        _context = context;
        _json = new Utf8JsonWriter(context.Response.BodyWriter);
    }

    public bool Started => _context.Response.HasStarted;

    /// <summary>Sends the headers: 200, text/event-stream, no buffering on the way.</summary>
    public Task StartAsync()
    {
        HttpResponse response = _context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        _context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        return response.StartAsync(_context.RequestAborted);
    }

    public async Task WriteAsync<T>(T value, JsonTypeInfo<T> typeInfo)
    {
        var writer = _context.Response.BodyWriter;
        writer.Write("data: "u8);
        _json.Reset(writer);
        JsonSerializer.Serialize(_json, value, typeInfo);
        _json.Flush();
        writer.Write("\n\n"u8);
        await writer.FlushAsync(_context.RequestAborted);
    }

    public async Task WriteDoneAsync()
    {
        var writer = _context.Response.BodyWriter;
        writer.Write("data: [DONE]\n\n"u8);
        await writer.FlushAsync(_context.RequestAborted);
    }

    public void Dispose() => _json.Dispose();
}
