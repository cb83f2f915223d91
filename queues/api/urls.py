from django.urls import path, re_path

from .views import TopicApi, TopicListApi, TopicWatchApi

urlpatterns = [
    # first: produce and consume; (?s): a name with a newline must reach the view and get 400 "invalid topic"
    re_path(r"^topics/(?P<topic>(?s:.+))\Z", TopicApi.as_view(), name="topic"),
    path("topics", TopicListApi.as_view(), name="topic-list"),
    path("topics/", TopicListApi.as_view()),
    path("ws/topics", TopicWatchApi.as_view(), name="topic-watch"),
    re_path(r"^ws/topics/(?P<topic>(?s:.+))\Z", TopicWatchApi.as_view(), name="topic-watch-one"),
]
